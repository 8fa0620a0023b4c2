"""ULSAD's per-location feature distance and the attention maps compared by its global loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def feature_distance(first: torch.Tensor, second: torch.Tensor, cosine_weight: float) -> torch.Tensor:
    """Per-location ``mean_c (a - b)² + λ·(1 - cos_c(a, b))`` of two ``(B, C, H, W)`` maps.

    Returns ``(B, H, W)``.

    Example:
        >>> feature_distance(torch.ones(1, 4, 2, 2), torch.ones(1, 4, 2, 2), 0.5).abs().max()
        tensor(0.)
    """
    squared = (first - second).pow(2).mean(dim=1)
    return squared + cosine_weight * (1 - F.cosine_similarity(first, second, dim=1))


def attention(query: torch.Tensor, key_value: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention between the locations of two ``(B, C, H, W)`` maps.

    Every location of ``query`` attends over all locations of ``key_value``, which also supplies
    the values: ``softmax(Q Kᵀ / sqrt(C)) V`` with tokens = locations. ``attention(x, x)`` is
    ULSAD's self-attention of the features, ``attention(g, x)`` its cross-attention from the
    global branch ``g``. Returns a map shaped like ``key_value``.

    Example:
        >>> attention(torch.rand(2, 8, 4, 4), torch.rand(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])
    """
    batch, channels, height, width = key_value.shape
    queries = query.flatten(2).transpose(1, 2)  # (B, HW, C)
    keys = key_value.flatten(2).transpose(1, 2)
    weights = torch.softmax(queries @ keys.transpose(1, 2) / math.sqrt(channels), dim=-1)
    return (weights @ keys).transpose(1, 2).reshape(batch, channels, height, width)
