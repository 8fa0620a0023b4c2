"""Feature maps of several backbones on one grid: aligned, concatenated and lightly blurred."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from anomalib.models.components import GaussianBlur2d
from torch import nn

from .backbone import Backbone


class MultiBackbone(nn.Module):
    """Concatenated feature maps of several timm backbones on the grid of the first map.

    Each backbone normalises its own input. Every map is upsampled bilinearly to the grid of
    the first map, the maps are concatenated along channels, and a depthwise Gaussian blur
    (3×3, sigma 4, zero padding) smooths the result.

    Alignment rule: the first map must be the finest, and every other map's height and width
    must divide the first map's exactly (upsampling by a whole factor per axis). Anything else
    would blend locations that do not cover the same image region and raises a ``ValueError``
    naming the maps; choose an input size that is a multiple of the largest stride.

    Args:
        backbones: ``(timm name, layer names)`` pairs, in order; the first layer of the first
            backbone sets the output grid.
        pre_trained: download timm's pretrained weights for every backbone without ``weights``.
        weights: local weights files, one entry per backbone (``None`` entries allowed).
        blur_sigma: sigma of the Gaussian; ``0`` disables the blur.
        blur_kernel_size: side of the Gaussian kernel.

    Example:
        >>> extractor = MultiBackbone(
        ...     [("resnet18", ["layer1", "layer2"]), ("mobilenetv2_100", ["blocks.4"])], pre_trained=False
        ... )
        >>> extractor(torch.rand(1, 3, 128, 128)).shape
        torch.Size([1, 288, 32, 32])
    """

    def __init__(
        self,
        backbones: Sequence[tuple[str, Sequence[str]]],
        pre_trained: bool = True,
        weights: Sequence[str | Path | None] | None = None,
        blur_sigma: float = 4.0,
        blur_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        backbones = [tuple(pair) for pair in backbones]
        if not backbones or any(len(pair) != 2 for pair in backbones):
            msg = f"backbones must be a non-empty list of (timm name, layer names) pairs, got {backbones!r}."
            raise ValueError(msg)
        weights = [None] * len(backbones) if weights is None else list(weights)
        if len(weights) != len(backbones):
            msg = (
                f"weights must have one entry per backbone ({len(backbones)}), got {len(weights)}; "
                "use None for a backbone without a local file."
            )
            raise ValueError(msg)
        if blur_sigma < 0 or blur_kernel_size < 1 or blur_kernel_size % 2 == 0:
            msg = (
                "blur_sigma must be >= 0 and blur_kernel_size a positive odd number, "
                f"got blur_sigma={blur_sigma}, blur_kernel_size={blur_kernel_size}."
            )
            raise ValueError(msg)
        self.backbones = nn.ModuleList(
            Backbone(name, layers, pre_trained=pre_trained, weights=path)
            for (name, layers), path in zip(backbones, weights, strict=True)
        )
        self.map_names = [f"{bb.name}:{layer}" for bb in self.backbones for layer in bb.layers]
        self.channels = sum(sum(bb.channels) for bb in self.backbones)
        self.blur: nn.Module = nn.Identity()
        if blur_sigma > 0:
            self.blur = GaussianBlur2d(
                sigma=blur_sigma, channels=self.channels, kernel_size=blur_kernel_size, border_type="constant"
            )
            # anomalib keeps the per-channel kernel as an expanded view, which a checkpoint cannot
            # be loaded into; own a real copy instead.
            self.blur.kernel = self.blur.kernel.contiguous()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, channels, H, W)`` on the grid of the first map, from RGB images in ``[0, 1]``."""
        maps = [feature for backbone in self.backbones for feature in backbone(images)]
        grid = tuple(maps[0].shape[-2:])
        self._check_alignment([tuple(m.shape[-2:]) for m in maps])
        aligned = [
            m
            if tuple(m.shape[-2:]) == grid
            else F.interpolate(m, size=grid, mode="bilinear", align_corners=False)
            for m in maps
        ]
        return self.blur(torch.cat(aligned, dim=1))

    @torch.no_grad()
    def output_grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """Grid of the output for ``image_size`` inputs; raises if the maps cannot be aligned."""
        probe = torch.zeros(1, 3, *image_size, device=next(self.buffers()).device)
        grids = []
        for backbone in self.backbones:
            try:
                grids += [tuple(f.shape[-2:]) for f in backbone(probe)]
            except (AssertionError, RuntimeError) as error:  # e.g. a ViT/CaiT with a fixed input size
                msg = (
                    f"Backbone {backbone.name!r} cannot take {image_size[0]}×{image_size[1]} inputs: {error}"
                )
                raise ValueError(msg) from error
        self._check_alignment(grids, image_size)
        return grids[0]

    def _check_alignment(
        self, grids: list[tuple[int, ...]], image_size: tuple[int, int] | None = None
    ) -> None:
        height, width = grids[0]
        bad = [
            f"{name} {h}×{w}"
            for name, (h, w) in zip(self.map_names[1:], grids[1:], strict=True)
            if height % h or width % w
        ]
        if bad:
            where = f" for {image_size[0]}×{image_size[1]} inputs" if image_size else ""
            msg = (
                f"Feature grids cannot be aligned{where}: every map must divide the first map "
                f"({self.map_names[0]} {height}×{width}) by a whole factor per axis, but "
                f"{', '.join(bad)} do not. Use an input size that is a multiple of the largest "
                "stride, or put the finest layer first."
            )
            raise ValueError(msg)
