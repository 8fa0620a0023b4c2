"""Patch scores of LDKNN and the KNN variants of REB Table 6, on one memory bank.

Each scorer has two halves: ``fit_statistics`` computes per-memory-point tables once at fit
time (faiss, numpy), and ``score`` turns a query's neighbours into a score inside ``forward``
(torch only, export-safe). Distances are squared L2 like faiss returns them (the authors' code),
or plain L2 with ``distance="euclidean"`` (PatchCore's).

``lof`` and ``ldof`` are the textbook forms (Breunig et al. 2000; Zhang et al. 2009);
``lof_reb`` and ``ldof_reb`` are the forms REB's code scores its Table 6 with.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from anomalib_pdae.models.components.embedding_store import EmbeddingStore
from anomalib_pdae.models.components.search import faiss_knn, knn_reranked, nearest_neighbours

SCORERS = ("ldknn", "knn", "kth_nn", "lof", "ldof", "lof_reb", "ldof_reb")
# Scorers that need K >= 2: LDOF averages distances among the K neighbours, REB's LOF fits on K - 1.
NEEDS_TWO_NEIGHBOURS = ("ldof", "lof_reb", "ldof_reb")
DENSITY_MODES = ("subtract", "ratio")
DISTANCES = ("squared", "euclidean")
# Guards the ratio forms against a zero density (duplicated memory points).
EPSILON = 1e-12
# ``search(queries, memory, k) -> (squared distances, indices)``, e.g. a NeighbourSearch module.
Search = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def fit_statistics(
    scorer: str,
    memory: torch.Tensor,
    full_bank: torch.Tensor | EmbeddingStore,
    k: int,
    distance: str = "squared",
    progress: bool = True,
    search: str = "exact",
) -> dict[str, torch.Tensor]:
    """Per-memory-point tables a scorer needs, keyed by buffer name.

    ``search="approximate"`` finds the local density's neighbours in the full bank by
    :func:`~anomalib_pdae.models.components.search.knn_reranked` (exact distances of the
    neighbours found); the tables within the memory bank are always exact.

    - ``ldknn``: ``local_density`` = mean distance of each memory point to its K nearest
      neighbours in the full (pre-coreset) bank, itself excluded — as the REB code does.
    - ``lof``: ``k_distance`` (distance to the K-th neighbour) and ``lrd`` (local reachability
      density, Breunig et al. 2000), both within the memory bank.
    - ``lof_reb``: ``lrd`` = 1 / the point's own distance to its (K − 1)-th neighbour in the
      memory bank, itself excluded (REB's code searches K neighbours and drops the first; its
      reachability distance takes the point's own k-distance, so the mean is that distance).
    - ``knn``, ``kth_nn``, ``ldof``, ``ldof_reb``: nothing.
    """
    if scorer == "ldknn":
        label = "local density" if progress else None
        distances = _knn_distances(memory, full_bank, k, distance, label, search)[0]
        return {"local_density": torch.from_numpy(distances.mean(1))}
    if scorer == "lof":
        distances, indices = _knn_distances(
            memory, memory, k, distance, "LOF densities" if progress else None
        )
        k_distance = distances[:, -1]
        reach = np.maximum(k_distance[indices], distances)
        lrd = 1.0 / (reach.mean(1) + EPSILON)
        return {"k_distance": torch.from_numpy(k_distance), "lrd": torch.from_numpy(lrd.astype(np.float32))}
    if scorer == "lof_reb":
        distances = _knn_distances(memory, memory, k - 1, distance, "LOF densities" if progress else None)[0]
        return {"lrd": torch.from_numpy((1.0 / (distances[:, -1] + EPSILON)).astype(np.float32))}
    return {}


def score(
    scorer: str,
    queries: torch.Tensor,
    memory: torch.Tensor,
    statistics: dict[str, torch.Tensor],
    k: int,
    ld_coefficient: float = 1.0,
    density_mode: str = "subtract",
    distance: str = "squared",
    search: Search = nearest_neighbours,
) -> torch.Tensor:
    """Score of every query row ``(N,)``; higher is more anomalous.

    ``lof_reb``: mean ``lrd`` of the K neighbours over the query's own ``1 / k-distance``.
    ``ldof_reb``: LDOF on Euclidean distances whatever ``distance`` says (REB's code takes the
    square root of faiss's distances and ``torch.cdist`` among the neighbours).
    """
    if scorer == "ldof_reb":
        scorer, distance = "ldof", "euclidean"
    if scorer == "ldknn":
        nearest, index = nearest_memory(queries, memory, distance, search)
        return density_corrected(nearest, statistics["local_density"][index], ld_coefficient, density_mode)
    distances, indices = search(queries, memory, k=k)
    distances = _metric(distances, distance)
    if scorer == "knn":
        return distances.mean(1)
    if scorer == "kth_nn":
        return distances[:, -1]
    if scorer in ("lof", "lof_reb"):
        return _lof(scorer, distances, indices, statistics)
    if scorer == "ldof":
        neighbours = memory[indices]  # (N, K, D)
        squared = (neighbours.unsqueeze(1) - neighbours.unsqueeze(2)).pow(2).sum(-1)
        inner = _metric(squared, distance).sum((1, 2)) / (k * (k - 1))
        return distances.mean(1) / (inner + EPSILON)
    msg = f"scorer must be one of {SCORERS}, got {scorer!r}."
    raise ValueError(msg)


def _lof(
    scorer: str, distances: torch.Tensor, indices: torch.Tensor, statistics: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Mean local reachability density of the K neighbours over the query's own."""
    if scorer == "lof":  # reachability distance: the larger of d and the neighbour's k-distance
        reach = torch.maximum(statistics["k_distance"][indices], distances)
        own_lrd = 1.0 / (reach.mean(1) + EPSILON)
    else:  # REB's code: the query's own k-distance
        own_lrd = 1.0 / (distances[:, -1] + EPSILON)
    return statistics["lrd"][indices].mean(1) / own_lrd


def nearest_memory(
    queries: torch.Tensor,
    memory: torch.Tensor,
    distance: str = "squared",
    search: Search = nearest_neighbours,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance ``(N,)`` of every query to its nearest memory point, and that point's row ``(N,)``.

    The distance alone is PatchCore's patch score.
    """
    nearest, index = search(queries, memory, k=1)
    return _metric(nearest[:, 0], distance), index[:, 0]


def density_corrected(
    nearest: torch.Tensor, density: torch.Tensor, ld_coefficient: float, density_mode: str
) -> torch.Tensor:
    """LDKNN's score: ``d − gamma·ld`` (the REB code) or ``d / ld^gamma``."""
    if density_mode == "subtract":
        return nearest - ld_coefficient * density
    return nearest / (density + EPSILON).pow(ld_coefficient)


def _metric(squared: torch.Tensor, distance: str) -> torch.Tensor:
    return squared.sqrt() if distance == "euclidean" else squared


def _knn_distances(
    queries: torch.Tensor,
    bank: torch.Tensor | EmbeddingStore,
    k: int,
    distance: str,
    progress: str | None,
    search: str = "exact",
) -> tuple[np.ndarray, np.ndarray]:
    """K nearest neighbours of bank points in ``bank``, themselves excluded."""
    knn = knn_reranked if search == "approximate" else faiss_knn
    distances, indices = knn(queries, bank, k, exclude_self=True, progress=progress)
    return (np.sqrt(distances) if distance == "euclidean" else distances), indices
