"""LDKNN as a plain torch module: patch embedding, memory bank, local-density scoring."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from anomalib.models.components import DynamicBufferMixin
from torch import nn

from anomalib_pdae.models.components import (
    Backbone,
    NeighbourSearch,
    PatchEmbedding,
    greedy_coreset,
    reb_embedding_dim,
)

from . import scorers
from .anomaly_map import AnomalyMap

IMAGE_SCORES = ("block_max", "max")
# What the pixel map is made of: the scorer's patch scores (REB), or the plain distance to the
# nearest memory point (PatchCore's map) while the image score keeps the scorer's correction.
MAP_SCORES = ("score", "distance")
# Images passed through the backbone at once when fitting and validating: the activations of a
# whole batch (32 images at 256 px: about 0.5 GB, plus a 0.27 GB distance block) would otherwise
# sit on top of the growing bank or of what the fit left fragmented.
CHUNK_IMAGES = 8
# Buffers filled by ``fit``; every one may change size between checkpoints.
BANK_BUFFERS = ("memory_bank", "local_density", "k_distance", "lrd")


class LdknnModel(DynamicBufferMixin, nn.Module):
    """Nearest-neighbour patch scoring corrected by the memory bank's local density (REB §3.3).

    In training mode ``forward`` returns patch embeddings ``(B·H·W, D)``; :meth:`fit` turns all
    of them into the memory bank. In eval mode it returns an ``InferenceBatch``.

    Example:
        >>> model = LdknnModel(backbone="resnet18", pre_trained=False, k=2)
        >>> _ = model.train()
        >>> bank = model(torch.rand(2, 3, 64, 64))
        >>> model.fit(bank, progress=False)
        >>> model.eval()(torch.rand(1, 3, 64, 64)).pred_score.shape
        torch.Size([1])
    """

    def __init__(
        self,
        backbone: str = "resnet18.tv_in1k",
        layers: Sequence[str] = ("layer2", "layer3"),
        pre_trained: bool = True,
        weights: str | Path | None = None,
        k: int = 5,
        ld_coefficient: float = 1.0,
        density_mode: str = "subtract",
        image_score: str = "block_max",
        scorer: str = "ldknn",
        distance: str = "squared",
        coreset_ratio: float = 1.0,
        embedding_dim: int | None = None,
        aggregation: str = "reference",
        blur_sigma: float = 4.0,
        map_score: str = "score",
        search: str = "exact",
        candidates: int = 8,
        projection_dim: int = 128,
    ) -> None:
        super().__init__()
        _check_choice("scorer", scorer, scorers.SCORERS)
        _check_choice("map_score", map_score, MAP_SCORES)
        _check_choice("density_mode", density_mode, scorers.DENSITY_MODES)
        _check_choice("image_score", image_score, IMAGE_SCORES)
        _check_choice("distance", distance, scorers.DISTANCES)
        if not isinstance(k, int) or k < 1:
            msg = f"k (neighbourhood size) must be an integer >= 1, got {k!r}."
            raise ValueError(msg)
        if scorer in scorers.NEEDS_TWO_NEIGHBOURS and k < 2:
            msg = f"k must be >= 2 for scorer={scorer!r} (it needs two neighbours per point)."
            raise ValueError(msg)
        if ld_coefficient < 0:
            msg = f"ld_coefficient (gamma) must be >= 0, got {ld_coefficient}."
            raise ValueError(msg)
        if not 0 < coreset_ratio <= 1:
            msg = f"coreset_ratio must be in (0, 1] (1 keeps the whole bank), got {coreset_ratio}."
            raise ValueError(msg)
        self.k = k
        self.ld_coefficient = ld_coefficient
        self.density_mode = density_mode
        self.image_score = image_score
        self.scorer = scorer
        self.distance = distance
        self.coreset_ratio = coreset_ratio
        self.map_score = map_score
        self.feature_extractor = Backbone(backbone, layers, pre_trained=pre_trained, weights=weights)
        if embedding_dim is None:
            embedding_dim = reb_embedding_dim(backbone)
        self.embedding = PatchEmbedding(embedding_dim=embedding_dim, aggregation=aggregation)
        self.anomaly_map = AnomalyMap(sigma=blur_sigma)
        features = embedding_dim if aggregation == "reference" else None
        self.search = NeighbourSearch(search, candidates, projection_dim, features=features, k=k)
        for name in BANK_BUFFERS:
            self.register_buffer(name, torch.empty(0))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embeddings ``(B, D, H, W)`` of ``[0, 1]`` RGB images."""
        with torch.no_grad():
            return self.embedding(self.feature_extractor(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor | InferenceBatch:
        """Training: embeddings ``(B·H·W, D)``. Eval: image scores and blurred anomaly maps."""
        if self.training:
            return torch.cat([_rows(self.embed(part)) for part in images.split(CHUNK_IMAGES)])
        image_patches, map_patches = self.patch_scores(self.embed(images))
        return InferenceBatch(
            pred_score=self.image_scores(image_patches),
            anomaly_map=self.anomaly_map(map_patches, images.shape[-2:]),
        )

    def patch_scores(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch scores ``(B, 1, H, W)`` of embeddings ``(B, D, H, W)``: for the image, for the map.

        The two are the same tensor unless ``map_score="distance"``.
        """
        self.check_fitted()
        batch, _, height, width = embedding.shape
        queries = _rows(embedding)
        shape = (batch, 1, height, width)
        if self.scorer == "ldknn":  # one search serves both the corrected score and the distance
            nearest, index = scorers.nearest_memory(queries, self.memory_bank, self.distance, self.search)
            density = self.local_density[index]
            corrected = scorers.density_corrected(nearest, density, self.ld_coefficient, self.density_mode)
            pixel = nearest if self.map_score == "distance" else corrected
            return corrected.reshape(shape), pixel.reshape(shape)
        statistics = {name: getattr(self, name) for name in BANK_BUFFERS[1:]}
        patch_scores = scorers.score(
            self.scorer,
            queries,
            self.memory_bank,
            statistics,
            k=self.k,
            ld_coefficient=self.ld_coefficient,
            density_mode=self.density_mode,
            distance=self.distance,
            search=self.search,
        ).reshape(shape)
        if self.map_score == "score":
            return patch_scores, patch_scores
        nearest = scorers.nearest_memory(queries, self.memory_bank, self.distance, self.search)[0]
        return patch_scores, nearest.reshape(shape)

    def image_scores(self, patch_scores: torch.Tensor) -> torch.Tensor:
        """Image scores ``(B,)`` of patch scores ``(B, 1, H, W)``."""
        if self.image_score == "block_max":  # the REB code: largest mean over 3×3 blocks
            return F.avg_pool2d(patch_scores, 3).amax(dim=(1, 2, 3))
        return patch_scores.amax(dim=(1, 2, 3))

    def check_fitted(self) -> None:
        """Raise a ``RuntimeError`` naming the cause when the memory bank is empty."""
        if self.memory_bank.numel() == 0:
            msg = (
                "LDKNN is not fitted: its memory bank is empty. Train it on normal images "
                "(Engine.fit / `anomalib train`) or load a trained checkpoint (--ckpt_path) "
                "before testing, predicting or exporting."
            )
            raise RuntimeError(msg)

    def fit(self, embeddings: torch.Tensor, progress: bool = True) -> None:
        """Build the memory bank (optionally a coreset) and the scorer's tables from all embeddings."""
        if embeddings.numel() == 0:
            msg = "LDKNN got no training embeddings: the training set is empty."
            raise ValueError(msg)
        bank_size = (
            len(embeddings)
            if self.coreset_ratio == 1
            else max(1, round(len(embeddings) * self.coreset_ratio))
        )
        if self.k >= bank_size:
            msg = (
                f"k={self.k} must be smaller than the memory bank ({bank_size} patches after the "
                f"coreset): use more training images, a larger coreset_ratio or a smaller k."
            )
            raise ValueError(msg)
        self.search.check_bank_size(bank_size)
        memory = embeddings
        if self.coreset_ratio < 1:
            memory = embeddings[
                torch.from_numpy(greedy_coreset(embeddings, self.coreset_ratio, progress=progress))
            ]
        tables = scorers.fit_statistics(
            self.scorer, memory, embeddings, self.k, self.distance, progress=progress
        )
        self.memory_bank = memory.contiguous()
        self.search.fit(self.memory_bank)
        for name in BANK_BUFFERS[1:]:
            setattr(self, name, tables.get(name, torch.empty(0)).to(memory.device))


def _rows(embedding: torch.Tensor) -> torch.Tensor:
    """``(B, D, H, W)`` → one row per patch ``(B·H·W, D)``, image by image, row-major."""
    return embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1])


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        msg = f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}."
        raise ValueError(msg)
