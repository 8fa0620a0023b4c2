"""CutPaste (Li et al., CVPR 2021) synthetic defects on a batch of image tensors."""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.transforms import v2


class CutPaste(nn.Module):
    """Copy a colour-jittered region of each image onto another place of the same image.

    Per image one of two shapes, with equal probability: *cutpaste*, a rectangle of
    ``area_ratio`` × the image area with aspect ratio drawn from ``[0.3, 1]`` or ``[1, 3.3]``;
    or *scar*, a thin rectangle of width 2–16 and length 10–25 px rotated by up to ±45°. The
    copied region gets ColorJitter(0.1, 0.1, 0.1, 0.1).

    Scar sizes are pixels of the image CutPaste was designed to see. Applied after resizing, they
    are scaled by ``width / native_width`` when the dataset's native width is known (as if cut
    before resizing, the way PDAE's code does on MVTec LOCO), else by ``min(H, W) / 256``.

    Args:
        area_ratio: range of the cutpaste rectangle's share of the image area.
        jitter: strength of brightness, contrast, saturation and hue jitter of the copied region.
        native_width: width in pixels of the dataset's images before resizing, if known.

    Example:
        >>> augment = CutPaste()
        >>> augment(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
    """

    def __init__(
        self,
        area_ratio: tuple[float, float] = (0.02, 0.15),
        jitter: float = 0.1,
        native_width: int | None = None,
    ) -> None:
        super().__init__()
        if not 0 < area_ratio[0] <= area_ratio[1] < 1:
            msg = f"area_ratio must satisfy 0 < low <= high < 1, got {area_ratio}."
            raise ValueError(msg)
        if native_width is not None and native_width < 1:
            msg = f"native_width must be a positive number of pixels or None, got {native_width}."
            raise ValueError(msg)
        self.area_ratio = area_ratio
        self.native_width = native_width
        self.color_jitter = v2.ColorJitter(jitter, jitter, jitter, jitter) if jitter > 0 else nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Augmented copy of ``images`` ``(B, 3, H, W)`` with values in ``[0, 1]``."""
        return torch.stack([self._augment(image) for image in images])

    def _augment(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        if torch.rand(()) < 0.5:
            area = _uniform(*self.area_ratio) * height * width
            aspect = _uniform(0.3, 1.0) if torch.rand(()) < 0.5 else _uniform(1.0, 3.3)
            patch_w = min(max(int(math.sqrt(area * aspect)), 1), width)
            patch_h = min(max(int(math.sqrt(area / aspect)), 1), height)
            angle = 0.0
        else:
            scale = width / self.native_width if self.native_width else min(height, width) / 256
            patch_w = min(max(round(_uniform(2, 16) * scale), 1), width)
            patch_h = min(max(round(_uniform(10, 25) * scale), 1), height)
            angle = math.radians(_uniform(-45, 45))
        # Destination centre, and the shift that brings the source region onto it.
        source_y, source_x = _randint(height - patch_h + 1), _randint(width - patch_w + 1)
        target_y, target_x = _randint(height - patch_h + 1), _randint(width - patch_w + 1)
        mask = _rotated_rectangle(
            height, width, target_y + patch_h / 2, target_x + patch_w / 2, patch_h, patch_w, angle
        ).to(image.dtype)
        shifted = torch.roll(image, shifts=(target_y - source_y, target_x - source_x), dims=(-2, -1))
        patch = self.color_jitter(shifted)
        return mask * patch + (1 - mask) * image


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _randint(high: int) -> int:
    return int(torch.randint(high, ()))


def _rotated_rectangle(
    height: int, width: int, centre_y: float, centre_x: float, size_y: int, size_x: int, angle: float
) -> torch.Tensor:
    """``(H, W)`` 0/1 mask of a ``size_y × size_x`` rectangle about the centre, turned by ``angle``."""
    ys = torch.arange(height).view(-1, 1) + 0.5 - centre_y
    xs = torch.arange(width).view(1, -1) + 0.5 - centre_x
    along_x = xs * math.cos(angle) + ys * math.sin(angle)
    along_y = -xs * math.sin(angle) + ys * math.cos(angle)
    return ((along_x.abs() <= size_x / 2) & (along_y.abs() <= size_y / 2)).float()
