"""Pixel anomaly maps from patch scores, as the REB and PatchCore reference code computes them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from anomalib.models.components import GaussianBlur2d
from torch import nn


class AnomalyMap(nn.Module):
    """Bilinear upsampling to the image size, then a Gaussian blur equal to scipy's.

    REB and patchcore-inspection (``RescaleSegmentor``) blur with
    ``scipy.ndimage.gaussian_filter(sigma=4)``: a kernel truncated at 4 sigma, borders extended by
    half-sample symmetry (``d c b a | a b c d``). anomalib's ``GaussianBlur2d`` pads by
    ``F.pad(mode="reflect")`` (``d c b | a b c d``), which no ``F.pad`` mode turns into scipy's, so
    the symmetric extension is built here from flips and the blur runs unpadded. Torch only,
    export-safe: the number of padding steps depends on the map size, never on the batch.

    Example:
        >>> AnomalyMap(sigma=4.0)(torch.rand(2, 1, 32, 32), (256, 256)).shape
        torch.Size([2, 1, 256, 256])
    """

    def __init__(self, sigma: float = 4.0) -> None:
        super().__init__()
        if sigma <= 0:
            msg = f"blur_sigma must be positive, got {sigma}."
            raise ValueError(msg)
        self.radius = int(4.0 * sigma + 0.5)  # scipy's default truncate=4.0
        size = 2 * self.radius + 1
        self.blur = GaussianBlur2d(sigma=sigma, channels=1, kernel_size=size, padding="valid")

    def forward(self, patch_scores: torch.Tensor, image_size: tuple[int, int] | torch.Size) -> torch.Tensor:
        """``(B, 1, h, w)`` patch scores → ``(B, 1, H, W)`` blurred pixel map."""
        upsampled = F.interpolate(patch_scores, size=tuple(image_size), mode="bilinear", align_corners=False)
        return self.blur(_symmetric_pad(upsampled, self.radius))


def _symmetric_pad(maps: torch.Tensor, radius: int) -> torch.Tensor:
    """Extend the last two dims by ``radius`` on each side, mirroring about the outer pixel edge."""
    for dim in (-1, -2):
        left = right = radius
        while left > 0 or right > 0:  # more than one reflection when the map is narrower than radius
            length = maps.shape[dim]
            take_left, take_right = min(left, length), min(right, length)
            head = maps.narrow(dim, 0, take_left).flip(dim)
            tail = maps.narrow(dim, length - take_right, take_right).flip(dim)
            maps = torch.cat([head, maps, tail], dim=dim)
            left, right = left - take_left, right - take_right
    return maps
