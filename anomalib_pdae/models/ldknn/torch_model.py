"""LDKNN as a plain torch module: patch embedding, memory bank, local-density scoring."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from anomalib.data import InferenceBatch
from anomalib.models.components import DynamicBufferMixin
from torch import nn

from anomalib_pdae.models.components import Backbone, NeighbourSearch, PatchEmbedding, greedy_coreset
from anomalib_pdae.models.components.embedding_store import EmbeddingStore
from anomalib_pdae.models.components.stage_timer import StageTimer

from . import scorers
from .anomaly_map import AnomalyMap
from .image_score import image_scores
from .settings import BANK_SETTINGS, LdknnSettings

# Images passed through the backbone at once when fitting and validating: the activations of a
# whole batch (32 images at 256 px: about 0.5 GB, plus a 0.27 GB distance block) would otherwise
# sit on top of the growing bank or of what the fit left fragmented.
CHUNK_IMAGES = 8
# Patch embeddings held in memory while collecting (Ldknn, Reb): about 125 images at 256 px of
# 512-d float32 rows. Beyond, all of them go to a temporary file, and the fit holds the coreset's
# 128-d projection (a quarter of the rows' size), the memory bank and one block of rows. On
# KolektorSDD's 250 images (0.5 GB of rows) that lowers the fit's peak RSS from 1.9 to 1.4 GB
# for about 7% more fit time (benchmarks/results/large_fit.md).
EMBEDDING_MEMORY_BYTES = 2**28
# Buffers filled by ``fit``; every one may change size between checkpoints.
BANK_BUFFERS = ("memory_bank", "local_density", "k_distance", "lrd")
# Settings the scorer's per-memory-point tables depend on.
STATISTICS_SETTINGS = ("scorer", "k", "distance", "density_search")


class LdknnModel(DynamicBufferMixin, nn.Module):
    """Nearest-neighbour patch scoring corrected by the memory bank's local density (REB §3.3).

    In training mode ``forward`` returns patch embeddings ``(B·H·W, D)``; :meth:`fit` turns all
    of them into the memory bank. In eval mode it returns an ``InferenceBatch``. :meth:`rescore`
    scores the same bank with another scorer, K, search, ...; :attr:`timer` holds the seconds of
    the fit's stages (``coreset``, ``statistics``, ``search``).

    Args:
        settings: LDKNN's configuration (default: REB's).
        pre_trained: load timm's pretrained weights (needs the model hub).
        weights: local weights file for air-gapped machines (overrides ``pre_trained``).

    Example:
        >>> model = LdknnModel(LdknnSettings(backbone="resnet18", k=2), pre_trained=False)
        >>> _ = model.train()
        >>> bank = model(torch.rand(2, 3, 64, 64))
        >>> model.fit(bank, progress=False)
        >>> model.eval()(torch.rand(1, 3, 64, 64)).pred_score.shape
        torch.Size([1])
        >>> model.rescore(scorer="knn", k=1)
    """

    def __init__(
        self,
        settings: LdknnSettings | None = None,
        pre_trained: bool = True,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings = settings or LdknnSettings()
        self.feature_extractor = Backbone(
            settings.backbone, settings.layers, pre_trained=pre_trained, weights=weights
        )
        self.embedding = PatchEmbedding(
            embedding_dim=settings.embedding_width, aggregation=settings.aggregation
        )
        self.anomaly_map = AnomalyMap()
        self.search = _search(settings)
        self.timer = StageTimer()
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
        return self.image_outputs(*self.patch_scores(self.embed(images)), images.shape[-2:])

    def score(self, images: torch.Tensor) -> InferenceBatch:
        """Eval ``forward`` a few images at a time (``CHUNK_IMAGES``), for validation and test.

        The scores are those of one ``forward`` call; the distance blocks and backbone activations
        stay those of 8 images, not of anomalib's test batch of 32 (which lifted the KolektorSDD
        test's peak RSS by about 0.5 GB). ``forward`` itself stays one graph for export.
        """
        parts = [self(part) for part in images.split(CHUNK_IMAGES)]
        return InferenceBatch(
            pred_score=torch.cat([part.pred_score for part in parts]),
            anomaly_map=torch.cat([part.anomaly_map for part in parts]),
        )

    def image_outputs(
        self, image_patches: torch.Tensor, map_patches: torch.Tensor, image_size: tuple[int, int] | torch.Size
    ) -> InferenceBatch:
        """Image scores and ``image_size`` anomaly maps of patch scores ``(B, 1, H, W)``."""
        return InferenceBatch(
            pred_score=image_scores(image_patches, self.settings.image_score),
            anomaly_map=self.anomaly_map(map_patches, image_size),
        )

    def patch_scores(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch scores ``(B, 1, H, W)`` of embeddings ``(B, D, H, W)``: for the image, for the map.

        The two are the same tensor unless ``map_score="distance"``.
        """
        self.check_fitted()
        settings = self.settings
        batch, _, height, width = embedding.shape
        queries = _rows(embedding)
        shape = (batch, 1, height, width)
        if settings.scorer == "ldknn":  # one search serves both the corrected score and the distance
            nearest, index = scorers.nearest_memory(queries, self.memory_bank, settings.distance, self.search)
            density = self.local_density[index]
            corrected = scorers.density_corrected(
                nearest, density, settings.ld_coefficient, settings.density_mode
            )
            pixel = nearest if settings.map_score == "distance" else corrected
            return corrected.reshape(shape), pixel.reshape(shape)
        statistics = {name: getattr(self, name) for name in BANK_BUFFERS[1:]}
        patch_scores = scorers.score(
            settings.scorer,
            queries,
            self.memory_bank,
            statistics,
            k=settings.k,
            ld_coefficient=settings.ld_coefficient,
            density_mode=settings.density_mode,
            distance=settings.distance,
            search=self.search,
        ).reshape(shape)
        if settings.map_score == "score":
            return patch_scores, patch_scores
        nearest = scorers.nearest_memory(queries, self.memory_bank, settings.distance, self.search)[0]
        return patch_scores, nearest.reshape(shape)

    def check_fitted(self) -> None:
        """Raise a ``RuntimeError`` naming the cause when the memory bank is empty."""
        if self.memory_bank.numel() == 0:
            msg = (
                "LDKNN is not fitted: its memory bank is empty. Train it on normal images "
                "(Engine.fit / `anomalib train`) or load a trained checkpoint (--ckpt_path) "
                "before testing, predicting or exporting."
            )
            raise RuntimeError(msg)

    def fit(self, embeddings: torch.Tensor | EmbeddingStore, progress: bool = True) -> None:
        """Build the memory bank (optionally a coreset) and the scorer's tables from all embeddings.

        ``embeddings`` may be an :class:`EmbeddingStore` whose rows partly live on disk: the
        coreset and the local densities then read them block by block, and only the memory bank
        (and the coreset's 128-d projection) is held whole.
        """
        if len(embeddings) == 0 or (isinstance(embeddings, torch.Tensor) and embeddings.numel() == 0):
            msg = "LDKNN got no training embeddings: the training set is empty."
            raise ValueError(msg)
        settings = self.settings
        ratio = settings.coreset_ratio
        bank_size = len(embeddings) if ratio == 1 else max(1, round(len(embeddings) * ratio))
        _check_bank_size(settings, self.search, bank_size)
        self.timer.seconds.clear()
        if isinstance(embeddings, EmbeddingStore) and ratio == 1:  # the bank is every row
            embeddings = embeddings.drain()
        memory = embeddings
        if ratio < 1:
            with self.timer("coreset"):
                selected = torch.from_numpy(greedy_coreset(embeddings, ratio, progress=progress))
                if isinstance(embeddings, EmbeddingStore):
                    memory = embeddings.take(selected).to(self.memory_bank.device)
                else:
                    memory = embeddings[selected]
        self._fit_statistics(settings, memory, embeddings, progress)
        self.memory_bank = memory.contiguous()
        with self.timer("search"):
            self.search.fit(self.memory_bank)

    def rescore(self, **changes: Any) -> None:
        """Score the stored bank with other settings (``scorer``, ``k``, ``search``, ...).

        The settings are validated as at construction and the bank as by :meth:`fit`. The
        scorer's tables are recomputed when ``scorer``, ``k`` or ``distance`` change, from the
        stored bank: with a coreset that is the coreset itself (the full bank is not kept), not
        the full bank :meth:`fit` searched. The fields that shape the bank (backbone, layers,
        embedding, coreset) cannot change: fit a new model.
        """
        fixed = sorted(set(changes) & set(BANK_SETTINGS))
        if fixed:
            msg = f"rescore cannot change {', '.join(fixed)}: they shape the memory bank; fit a new model."
            raise ValueError(msg)
        self.check_fitted()
        settings = replace(self.settings, **changes)
        search = _search(settings).to(self.memory_bank.device)
        _check_bank_size(settings, search, len(self.memory_bank))
        if any(getattr(self.settings, name) != getattr(settings, name) for name in STATISTICS_SETTINGS):
            self._fit_statistics(settings, self.memory_bank, self.memory_bank, progress=False)
        self.settings, self.search = settings, search
        with self.timer("search"):
            self.search.fit(self.memory_bank)

    def _fit_statistics(
        self,
        settings: LdknnSettings,
        memory: torch.Tensor,
        full_bank: torch.Tensor | EmbeddingStore,
        progress: bool,
    ) -> None:
        with self.timer("statistics"):
            tables = scorers.fit_statistics(
                settings.scorer,
                memory,
                full_bank,
                settings.k,
                settings.distance,
                progress=progress,
                search=settings.density_search,
            )
        for name in BANK_BUFFERS[1:]:
            setattr(self, name, tables.get(name, torch.empty(0)).to(memory.device))


def _search(settings: LdknnSettings) -> NeighbourSearch:
    return NeighbourSearch(
        settings.search,
        settings.candidates,
        settings.projection_dim,
        features=settings.search_features,
        k=settings.search_k,
    )


def _check_bank_size(settings: LdknnSettings, search: NeighbourSearch, bank_size: int) -> None:
    """Refuse a K (or approximate-search candidates) the bank cannot provide."""
    if settings.k >= bank_size:
        msg = (
            f"k={settings.k} must be smaller than the memory bank ({bank_size} patches after the "
            f"coreset): use more training images, a larger coreset_ratio or a smaller k."
        )
        raise ValueError(msg)
    search.check_bank_size(bank_size)


def _rows(embedding: torch.Tensor) -> torch.Tensor:
    """``(B, D, H, W)`` → one row per patch ``(B·H·W, D)``, image by image, row-major."""
    return embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1])
