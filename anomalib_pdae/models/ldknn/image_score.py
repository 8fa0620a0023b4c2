"""Image scores from patch scores, as REB's code (block-max) or its paper (max) computes them."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMAGE_SCORES = ("block_max", "max")


def image_scores(patch_scores: torch.Tensor, mode: str = "block_max") -> torch.Tensor:
    """Image scores ``(B,)`` of patch scores ``(B, 1, H, W)``.

    ``"block_max"`` (the REB code): the largest mean over 3×3 blocks, trailing rows and columns
    that fill no block dropped; ``"max"`` (the paper): the largest patch score.

    Example:
        >>> patches = torch.zeros(1, 1, 3, 3)
        >>> patches[0, 0, 1, 1] = 9.0
        >>> image_scores(patches).item(), image_scores(patches, "max").item()
        (1.0, 9.0)
    """
    if mode == "block_max":
        return F.avg_pool2d(patch_scores, 3).amax(dim=(1, 2, 3))
    return patch_scores.amax(dim=(1, 2, 3))
