"""ULSAD's input features: two backbone layers pooled per location and standardised per channel."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from anomalib_pdae.models.components import Backbone
from anomalib_pdae.models.components.embedding import pool_concatenated


class StandardisedFeatures(nn.Module):
    """Backbone layers on the first layer's grid, pooled to ``feature_dim`` channels, standardised.

    Deeper maps are upsampled bilinearly to the first map's grid and concatenated; each
    location's channel vector is average-pooled to ``feature_dim`` values (``adaptive_avg_pool1d``
    over channels, :func:`pool_concatenated`). The result is
    standardised with per-channel ``mean``/``std`` buffers, which :meth:`fit` sets from the
    training images (until then they are 0 and 1).

    Example:
        >>> features = StandardisedFeatures("resnet18", ["layer2", "layer3"], pre_trained=False)
        >>> features(torch.rand(1, 3, 64, 64)).shape
        torch.Size([1, 384, 8, 8])
    """

    def __init__(
        self,
        backbone: str = "wide_resnet50_2.racm_in1k",
        layers: Sequence[str] = ("layer2", "layer3"),
        pre_trained: bool = True,
        weights: str | Path | None = None,
        feature_dim: int = 384,
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, layers, pre_trained=pre_trained, weights=weights)
        self.feature_dim = feature_dim
        self.register_buffer("mean", torch.zeros(1, feature_dim, 1, 1))
        self.register_buffer("std", torch.ones(1, feature_dim, 1, 1))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def stride(self) -> int:
        """Pixels per feature-grid cell (the first layer's stride)."""
        return self.backbone.strides[0]

    @torch.no_grad()
    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, feature_dim, h, w)`` before standardisation, from RGB images in ``[0, 1]``."""
        return pool_concatenated(self.backbone(images), self.feature_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Standardised features ``(B, feature_dim, h, w)``."""
        return (self.pooled(images) - self.mean) / self.std

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor]) -> None:
        """Set ``mean``/``std`` to the per-channel statistics over all locations of ``batches``.

        Sums run in float64 over an iterable of image batches; the standard deviation is the
        population one (as the published code), floored at 1e-6 for channels that never vary.
        """
        count, total, total_sq = 0, 0.0, 0.0
        for images in batches:
            pooled = self.pooled(images.to(self.mean.device)).double()
            count += pooled.shape[0] * pooled.shape[2] * pooled.shape[3]
            total = total + pooled.sum(dim=(0, 2, 3))
            total_sq = total_sq + pooled.pow(2).sum(dim=(0, 2, 3))
        if count == 0:
            msg = "Cannot compute the feature mean/std: no training images."
            raise ValueError(msg)
        mean = total / count
        std = (total_sq / count - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-6)
        self.mean.copy_(mean.view_as(self.mean))
        self.std.copy_(std.view_as(self.std))
        self.fitted.fill_(True)
