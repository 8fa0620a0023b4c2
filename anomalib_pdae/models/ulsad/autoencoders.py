"""ULSAD's two reconstruction networks: a local feature auto-encoder and a global image one."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _block(layer: nn.Module, channels: int, relu: bool = True) -> nn.Sequential:
    nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain("leaky_relu"))
    parts = [layer, nn.BatchNorm2d(channels)]
    return nn.Sequential(*parts, nn.ReLU()) if relu else nn.Sequential(*parts)


class LocalFeatureAutoencoder(nn.Module):
    """DFR-style convolutional auto-encoder on the ``(B, D, H, W)`` feature map.

    Encoder: 3×3 convolutions D→2D (stride 2), 2D→4D (stride 2), 4D→4D; decoder: transposed
    convolutions 4D→2D→D (stride 2) and a 5×5 one D→2D; batch norm after every layer, ReLU
    after all but the bottleneck and, unless ``output_relu``, the output. The output's first D
    channels (L) reconstruct the features, the last D (L') predict the global branch. H and W
    must be multiples of 4.

    Args:
        feature_dim: D.
        output_relu: end with a ReLU as the published code does, although the standardised
            features it reconstructs are negative about half the time.

    Example:
        >>> LocalFeatureAutoencoder(16)(torch.rand(2, 16, 8, 8)).shape
        torch.Size([2, 32, 8, 8])
    """

    def __init__(self, feature_dim: int = 384, output_relu: bool = False) -> None:
        super().__init__()
        d = feature_dim
        self.encoder = nn.Sequential(
            _block(nn.Conv2d(d, 2 * d, 3, stride=2, padding=1), 2 * d),
            _block(nn.Conv2d(2 * d, 4 * d, 3, stride=2, padding=1), 4 * d),
            _block(nn.Conv2d(4 * d, 4 * d, 3, padding=1), 4 * d, relu=False),
        )
        self.decoder = nn.Sequential(
            _block(nn.ConvTranspose2d(4 * d, 2 * d, 4, stride=2, padding=1), 2 * d),
            _block(nn.ConvTranspose2d(2 * d, d, 4, stride=2, padding=1), d),
            _block(nn.ConvTranspose2d(d, 2 * d, 5, padding=2), 2 * d, relu=output_relu),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, 2D, H, W)``: the reconstruction L followed by the global prediction L'."""
        return self.decoder(self.encoder(features))


class GlobalImageAutoencoder(nn.Module):
    """EfficientAD-style auto-encoder from the whole image to a ``(B, D, h, w)`` feature grid.

    Five 4×4 stride-2 convolutions and one convolution covering the remaining grid squeeze the
    image into a 64-dimensional code (a 1×1 map); the decoder alternates bilinear upsampling and
    convolutions up to the requested grid. Batch norms carry no affine parameters, as in
    EfficientAD's auto-encoder.

    Args:
        image_size: ``(height, width)`` of the input, which fixes the bottleneck kernel.
        out_channels: D.

    Example:
        >>> ae = GlobalImageAutoencoder((64, 64), out_channels=16)
        >>> ae(torch.rand(2, 3, 64, 64), grid=(8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self, image_size: Sequence[int] = (256, 256), out_channels: int = 384) -> None:
        super().__init__()
        bottleneck = [int(side) for side in image_size]
        for _ in range(5):
            bottleneck = [side // 2 for side in bottleneck]
        if min(bottleneck) < 1:
            msg = f"GlobalImageAutoencoder needs images of at least 32×32 pixels, got {tuple(image_size)}."
            raise ValueError(msg)
        channels = [3, 32, 32, 64, 64, 64]
        encoder = [
            self._norm_relu(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), c_out)
            for c_in, c_out in itertools.pairwise(channels)
        ]
        encoder.append(self._norm_relu(nn.Conv2d(64, 64, tuple(bottleneck)), 64))
        self.encoder = nn.Sequential(*encoder)
        self.upsampling_convs = nn.ModuleList(
            [self._norm_relu(nn.Conv2d(64, 64, 4, padding=2), 64) for _ in range(5)]
        )
        self.head = nn.Sequential(
            self._norm_relu(nn.Conv2d(64, 64, 3, padding=1), 64),
            nn.Conv2d(64, out_channels, 3, padding=1),
        )

    @staticmethod
    def _norm_relu(conv: nn.Conv2d, channels: int) -> nn.Sequential:
        return nn.Sequential(conv, nn.BatchNorm2d(channels, eps=1e-4, affine=False), nn.ReLU())

    @staticmethod
    def upsampling_sizes(grid: Sequence[int]) -> list[tuple[int, int]]:
        """Sizes the code is resized to before each 4×4 convolution (which adds one pixel)."""

        def steps(side: int) -> list[int]:
            return [
                max(1, size) for size in (side // 8 - 1, side // 4, side // 2 - 1, side - 1, 2 * side - 1)
            ]

        height, width = grid
        return list(zip(steps(height), steps(width), strict=True))

    def forward(self, images: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        """``(B, D, *grid)`` from normalised images ``(B, 3, H, W)``."""
        code = self.encoder(images)
        for size, conv in zip(self.upsampling_sizes(grid), self.upsampling_convs, strict=True):
            code = conv(F.interpolate(code, size=size, mode="bilinear", align_corners=False))
        code = F.interpolate(code, size=tuple(grid), mode="bilinear", align_corners=False)
        return self.head(code)
