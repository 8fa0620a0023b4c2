"""PDAE's convolutional auto-encoder over feature maps."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

# The authors' auto-encoder (yamls/mv_CAE_Tconv_Simple.yaml) whatever the feature width.
AUTHORS_WIDTHS = (512, 256, 128)


def default_widths(in_channels: int, stages: int = 3) -> list[int]:
    """Hidden widths derived from the feature width: the largest power of two ≤ ``in_channels``, halved.

    An option for feature widths far from the paper's 960 (where it gives the authors' 512, 256, 128).

    Example:
        >>> default_widths(960), default_widths(72)
        ([512, 256, 128], [64, 32, 16])
    """
    top = 1 << (max(in_channels, 1).bit_length() - 1)
    return [max(top >> stage, 1) for stage in range(stages)]


class FeatureAutoEncoder(nn.Module):
    """Strided-conv encoder and transposed-conv decoder; output has the input's shape.

    Encoder: one 4×4 stride-2 convolution per width (BN + ReLU after each), then a 4×4
    stride-2 convolution to the bottleneck (no BN/ReLU). Decoder mirrors it with transposed
    convolutions, BN + ReLU after all but the last, no output activation. Convolution and
    linear weights ~ N(0, 0.02), batch-norm scales ~ N(1, 0.02), biases 0. The feature grid
    must be divisible by ``2 ** (len(hidden_widths) + 1)``.

    Args:
        in_channels: feature channels C.
        hidden_widths: encoder widths before the bottleneck; the authors' 512, 256, 128 by
            default, ``None`` derives them from C (:func:`default_widths`).
        bottleneck_channels: channels of the code.

    Example:
        >>> ae = FeatureAutoEncoder(960)
        >>> ae(torch.rand(2, 960, 96, 96)).shape
        torch.Size([2, 960, 96, 96])
    """

    def __init__(
        self,
        in_channels: int,
        hidden_widths: Sequence[int] | None = AUTHORS_WIDTHS,
        bottleneck_channels: int = 100,
    ) -> None:
        super().__init__()
        widths = default_widths(in_channels) if hidden_widths is None else list(hidden_widths)
        if in_channels < 1 or bottleneck_channels < 1 or any(w < 1 for w in widths):
            msg = (
                "in_channels, bottleneck_channels and every hidden width must be positive, got "
                f"in_channels={in_channels}, hidden_widths={widths}, "
                f"bottleneck_channels={bottleneck_channels}."
            )
            raise ValueError(msg)
        self.hidden_widths = widths
        self.reduction = 2 ** (len(widths) + 1)
        down = [in_channels, *widths]
        self.encoder = nn.Sequential(
            *(_block(nn.Conv2d, a, b) for a, b in pairwise(down)),
            nn.Conv2d(down[-1], bottleneck_channels, 4, 2, 1),
        )
        up = [bottleneck_channels, *reversed(widths)]
        self.decoder = nn.Sequential(
            *(_block(nn.ConvTranspose2d, a, b) for a, b in pairwise(up)),
            nn.ConvTranspose2d(up[-1], in_channels, 4, 2, 1),
        )
        self.apply(_init_weights)

    def check_grid(self, grid: tuple[int, int]) -> None:
        """Raise ``ValueError`` unless a ``grid``-sized map comes back at the same size."""
        if grid[0] % self.reduction or grid[1] % self.reduction:
            msg = (
                f"The auto-encoder cannot round-trip a {grid[0]}×{grid[1]} feature grid: both sides must "
                f"be multiples of {self.reduction} (2 ** number of strided convolutions). Change the "
                "image size (e.g. 384 with the default backbones) or the number of hidden widths."
            )
            raise ValueError(msg)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``features`` ``(B, C, H, W)``."""
        return self.decoder(self.encoder(features))


def _block(conv: type[nn.Module], in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        conv(in_channels, out_channels, 4, 2, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()
    )


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
