"""PDAE torch model: multi-backbone features, feature auto-encoder, patch-distance scores."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_pdae.models.components.embedding import neighbourhood_pool
from anomalib_pdae.models.components.multi_backbone import MultiBackbone

from .autoencoder import AUTHORS_WIDTHS, FeatureAutoEncoder

DEFAULT_BACKBONES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("densenet201.tv_in1k", ("features.denseblock1", "features.denseblock2")),
    ("cait_xxs24_384.fb_dist_in1k", ("blocks.15",)),
)


def patch_distances(
    features: torch.Tensor, reconstruction: torch.Tensor, patch_size: int = 5, embedding_dim: int = 512
) -> torch.Tensor:
    """``D = |P_k(F) − P_k(R)|`` as ``(B, embedding_dim, H, W)``, computed as ``|P_k(F − R)|``."""
    return neighbourhood_pool(features - reconstruction, patch_size, embedding_dim).abs()


def cross_patch_score(distances: torch.Tensor) -> torch.Tensor:
    """``s_cp``: per dimension the largest distance over all patches, averaged over dimensions."""
    return distances.amax(dim=(2, 3)).mean(dim=1)


def cross_dimension_score(distances: torch.Tensor) -> torch.Tensor:
    """``s_cd``: per patch the distance averaged over dimensions, largest over all patches."""
    return distances.mean(dim=1).amax(dim=(1, 2))


class PdaeModel(nn.Module):
    """Patch distance auto-encoder (Ma, Li, Wong, ESWA 2025).

    Features ``F`` of several frozen backbones on one grid are reconstructed by a convolutional
    auto-encoder. In training mode ``forward`` returns ``(F, R)`` for the loss (``R`` is the
    reconstruction of the optionally augmented images' features). In eval mode it scores
    ``D = |P_5(F) − P_5(R)|``: image score ``lambda·s_cp + (1 − lambda)·s_cd`` and anomaly map
    = mean of ``D`` over dimensions, upsampled bilinearly to the input size.

    Args:
        backbones: ``(timm name, layer names)`` pairs; default DenseNet201 denseblock1+2 and
            CaiT-XXS24-384 block 15.
        image_size: input size, used to check that the feature grid round-trips the AE.
        pre_trained: timm's pretrained weights for backbones without a local ``weights`` file.
        weights: local weights files, one per backbone (``None`` entries allowed).
        hidden_widths: AE widths before the bottleneck (the authors' 512, 256, 128 whatever the
            feature width); ``None`` derives them from the feature width.
        bottleneck_channels: AE code channels.
        embedding_dim: length of each location's pooled neighbourhood vector.
        score_patch_size: neighbourhood size k of the scores.
        score_weight: lambda, weight of ``s_cp`` in the image score.
        blur_sigma: sigma of the 3×3 Gaussian applied to the concatenated features.

    Example:
        >>> model = PdaeModel(
        ...     [("resnet18", ["layer1", "layer2"])], image_size=(128, 128), pre_trained=False
        ... ).eval()
        >>> model(torch.rand(2, 3, 128, 128)).anomaly_map.shape
        torch.Size([2, 1, 128, 128])
    """

    def __init__(
        self,
        backbones: Sequence[tuple[str, Sequence[str]]] = DEFAULT_BACKBONES,
        image_size: tuple[int, int] = (384, 384),
        pre_trained: bool = True,
        weights: Sequence[str | Path | None] | None = None,
        hidden_widths: Sequence[int] | None = AUTHORS_WIDTHS,
        bottleneck_channels: int = 100,
        embedding_dim: int = 512,
        score_patch_size: int = 5,
        score_weight: float = 0.65,
        blur_sigma: float = 4.0,
    ) -> None:
        super().__init__()
        self.feature_extractor = MultiBackbone(
            backbones, pre_trained=pre_trained, weights=weights, blur_sigma=blur_sigma
        )
        self.autoencoder = FeatureAutoEncoder(
            self.feature_extractor.channels, hidden_widths, bottleneck_channels
        )
        self.autoencoder.check_grid(self.feature_extractor.output_grid(tuple(image_size)))
        self.embedding_dim = embedding_dim
        self.score_patch_size = score_patch_size
        self.score_weight = score_weight

    def forward(
        self, images: torch.Tensor, augmented: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor] | InferenceBatch:
        """``(F, R)`` in training mode, ``InferenceBatch(pred_score, anomaly_map)`` in eval mode.

        Args:
            images: RGB in ``[0, 1]``, ``(B, 3, H, W)``.
            augmented: training only: images whose features the AE reconstructs (e.g. with
                CutPaste defects); the target stays the features of ``images``.
        """
        with torch.no_grad():
            features = self.feature_extractor(images)
            if self.training and augmented is not None:
                source = self.feature_extractor(augmented)
            else:
                source = features
        reconstruction = self.autoencoder(source)
        if self.training:
            return features, reconstruction
        distances = patch_distances(features, reconstruction, self.score_patch_size, self.embedding_dim)
        score = self.score_weight * cross_patch_score(distances) + (
            1 - self.score_weight
        ) * cross_dimension_score(distances)
        anomaly_map = F.interpolate(
            distances.mean(dim=1, keepdim=True), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        return InferenceBatch(pred_score=score, anomaly_map=anomaly_map)
