"""Pieces shared by several models: backbones, patch embedding, neighbour search, coreset.

Also here, imported by their module: the memory-bank models' base (``memory_bank``), the fit-stage
timer (``stage_timer``), checkpoint and dataset guards, defaults and compression checks.
"""

from .backbone import Backbone
from .coreset import greedy_coreset
from .embedding import PatchEmbedding, neighbourhood_pool, reb_embedding_dim
from .multi_backbone import MultiBackbone
from .search import SEARCH_MODES, NeighbourSearch, faiss_knn, nearest_neighbours, squared_distances
from .weights import WeightsError, create_timm_model

__all__ = [
    "SEARCH_MODES",
    "Backbone",
    "MultiBackbone",
    "NeighbourSearch",
    "PatchEmbedding",
    "WeightsError",
    "create_timm_model",
    "faiss_knn",
    "greedy_coreset",
    "nearest_neighbours",
    "neighbourhood_pool",
    "reb_embedding_dim",
    "squared_distances",
]
