"""PyTorch model of ULSAD: local and global reconstruction of standardised backbone features."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from anomalib.models.components import GaussianBlur2d
from torch import nn

from .autoencoders import GlobalImageAutoencoder, LocalFeatureAutoencoder
from .features import StandardisedFeatures
from .loss import attention, feature_distance


class UlsadLoss(NamedTuple):
    """The three terms of ULSAD's training loss (their sum is minimised)."""

    local: torch.Tensor
    attention: torch.Tensor
    global_branch: torch.Tensor


class UlsadModel(nn.Module):
    """ULSAD: a local feature auto-encoder and a global image auto-encoder on standardised features.

    Training mode returns the :class:`UlsadLoss` terms; eval mode returns an ``InferenceBatch``
    whose anomaly map averages the local map ``dist(phi, L)`` and the global map ``dist(G, L')``,
    each upsampled to the image size, scaled by its two quantiles on normal images (buffers set
    by :meth:`calibrate`; identity until then) and blurred.

    Args:
        backbone: timm architecture of the frozen feature extractor.
        layers: its layers; deeper maps are upsampled to the first one's grid.
        pre_trained: load timm's pretrained weights.
        weights: local weights file for the backbone (air-gapped machines).
        feature_dim: channels D the concatenated layers are pooled to.
        image_size: ``(height, width)`` of the input; a multiple of 4 × the first layer's stride.
        lambda_local: cosine weight in the local distance ``dist(phi, L)``.
        lambda_attention: cosine weight in the attention distance ``dist(SA, CA)``.
        lambda_global: cosine weight in the global distance ``dist(G, L')``.
        quantile_low: lower quantile of the map normalisation.
        quantile_high: upper quantile of the map normalisation.
        blur_sigma: sigma of the Gaussian blur of both maps, in pixels.
        local_output_relu: end the local auto-encoder with a ReLU (the published code).

    Example:
        >>> model = UlsadModel("resnet18", pre_trained=False, image_size=(64, 64)).eval()
        >>> model(torch.rand(2, 3, 64, 64)).anomaly_map.shape
        torch.Size([2, 1, 64, 64])
    """

    def __init__(
        self,
        backbone: str = "wide_resnet50_2.racm_in1k",
        layers: Sequence[str] = ("layer2", "layer3"),
        pre_trained: bool = True,
        weights: str | Path | None = None,
        feature_dim: int = 384,
        image_size: Sequence[int] = (256, 256),
        lambda_local: float = 0.5,
        lambda_attention: float = 0.5,
        lambda_global: float = 0.5,
        quantile_low: float = 0.9,
        quantile_high: float = 0.995,
        blur_sigma: float = 4.0,
        local_output_relu: bool = False,
    ) -> None:
        super().__init__()
        _check_arguments(feature_dim, image_size, lambda_local, lambda_attention, lambda_global)
        _check_quantiles(quantile_low, quantile_high, blur_sigma)
        self.features = StandardisedFeatures(backbone, layers, pre_trained, weights, feature_dim)
        multiple = 4 * self.features.stride
        if any(int(side) % multiple for side in image_size):
            msg = (
                f"image_size must be a multiple of {multiple} (4 × the stride of layer {layers[0]!r}) "
                f"so the local auto-encoder restores the feature grid, got {tuple(image_size)}."
            )
            raise ValueError(msg)
        self.feature_dim = feature_dim
        self.lambda_local = lambda_local
        self.lambda_attention = lambda_attention
        self.lambda_global = lambda_global
        self.quantile_low = quantile_low
        self.quantile_high = quantile_high
        self.local_ae = LocalFeatureAutoencoder(feature_dim, output_relu=local_output_relu)
        self.global_ae = GlobalImageAutoencoder(image_size, feature_dim)
        # Quantiles (low, high) of the local and global maps; (0, 0.1) makes the scaling
        # 0.1·(m − low)/(high − low) the identity until calibrate() runs.
        self.register_buffer("local_quantiles", torch.tensor([0.0, 0.1]))
        self.register_buffer("global_quantiles", torch.tensor([0.0, 0.1]))
        kernel_size = 2 * int(4.0 * blur_sigma + 0.5) + 1
        self.blur = GaussianBlur2d(sigma=blur_sigma, channels=1, kernel_size=kernel_size)

    def branches(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Features phi, global output G, local reconstruction L and global prediction L'."""
        phi = self.features(images)
        glob = self.global_ae(self.features.backbone.normalize(images), grid=phi.shape[-2:])
        local = self.local_ae(phi)
        return phi, glob, local[:, : self.feature_dim], local[:, self.feature_dim :]

    def losses(self, images: torch.Tensor) -> UlsadLoss:
        """Mean local, attention and global distances over a batch."""
        phi, glob, local, local_global = self.branches(images)
        self_attention = attention(phi, phi)
        cross_attention = attention(glob, phi)
        return UlsadLoss(
            local=feature_distance(phi, local, self.lambda_local).mean(),
            attention=feature_distance(self_attention, cross_attention, self.lambda_attention).mean(),
            global_branch=feature_distance(glob, local_global, self.lambda_global).mean(),
        )

    def raw_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Local and global maps ``(B, 1, H, W)`` upsampled to the image size, before scaling."""
        phi, glob, local, local_global = self.branches(images)
        maps = torch.stack(
            [
                feature_distance(phi, local, self.lambda_local),
                feature_distance(glob, local_global, self.lambda_global),
            ],
            dim=1,
        )
        maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return maps[:, :1], maps[:, 1:]

    def forward(self, images: torch.Tensor) -> UlsadLoss | InferenceBatch:
        """Loss terms in training mode; ``InferenceBatch(pred_score, anomaly_map)`` in eval mode."""
        if self.training:
            return self.losses(images)
        local, glob = self.raw_maps(images)
        # The blur is linear, so the mean of the two scaled maps is blurred once (the same map as
        # blurring each). Two blurs summed also met an OpenVINO CPU fault: with a dynamic batch,
        # on CPUs with AVX-512, batches of one or two came out wrong.
        anomaly_map = self.blur(
            0.5 * _scale(local, self.local_quantiles) + 0.5 * _scale(glob, self.global_quantiles)
        )
        return InferenceBatch(pred_score=anomaly_map.amax(dim=(1, 2, 3)), anomaly_map=anomaly_map)

    @torch.no_grad()
    def calibrate(self, batches: Iterable[torch.Tensor]) -> None:
        """Set both maps' quantile buffers from batches of NORMAL images (in eval mode)."""
        was_training = self.training
        self.eval()
        local_maps, global_maps = [], []
        for images in batches:
            local, glob = self.raw_maps(images.to(self.local_quantiles.device))
            local_maps.append(local.flatten())
            global_maps.append(glob.flatten())
        self.train(was_training)
        if not local_maps:
            msg = "ULSAD needs normal images to calibrate its map quantiles; none were given."
            raise ValueError(msg)
        levels = (self.quantile_low, self.quantile_high)
        self.local_quantiles.copy_(quantiles(torch.cat(local_maps), levels))
        self.global_quantiles.copy_(quantiles(torch.cat(global_maps), levels))


def quantiles(values: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
    """Linearly interpolated quantiles of a 1-D tensor (``torch.quantile``'s default), any size.

    ``torch.quantile`` refuses more than 2**24 values; sorting has no such limit.

    Example:
        >>> quantiles(torch.arange(11.0), [0.5, 0.95])
        tensor([5.0000, 9.5000])
    """
    ordered = values.flatten().sort().values
    position = torch.tensor(levels, dtype=torch.float64, device=values.device) * (ordered.numel() - 1)
    below = position.floor().long()
    above = position.ceil().long()
    fraction = (position - below).to(ordered.dtype)
    return ordered[below] + fraction * (ordered[above] - ordered[below])


def _scale(anomaly_map: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """Map the low quantile to 0 and the high one to 0.1."""
    return 0.1 * (anomaly_map - bounds[0]) / (bounds[1] - bounds[0])


def _check_arguments(
    feature_dim: int,
    image_size: Sequence[int],
    lambda_local: float,
    lambda_attention: float,
    lambda_global: float,
) -> None:
    if not isinstance(feature_dim, int) or feature_dim < 1:
        msg = f"feature_dim must be a positive integer, got {feature_dim!r}."
        raise ValueError(msg)
    if len(image_size) != 2 or any(int(side) < 32 for side in image_size):
        msg = f"image_size must be (height, width) with both sides at least 32, got {tuple(image_size)}."
        raise ValueError(msg)
    for name, value in (
        ("lambda_local", lambda_local),
        ("lambda_attention", lambda_attention),
        ("lambda_global", lambda_global),
    ):
        if value < 0:
            msg = f"{name} must be a non-negative weight, got {value}."
            raise ValueError(msg)


def _check_quantiles(quantile_low: float, quantile_high: float, blur_sigma: float) -> None:
    if not 0 <= quantile_low < quantile_high <= 1:
        msg = (
            "quantile_low and quantile_high must satisfy 0 <= quantile_low < quantile_high <= 1, "
            f"got {quantile_low} and {quantile_high}."
        )
        raise ValueError(msg)
    if blur_sigma <= 0:
        msg = f"blur_sigma must be positive, got {blur_sigma}."
        raise ValueError(msg)
