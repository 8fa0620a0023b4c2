"""Patch embeddings of the memory-bank models (PatchCore's reference aggregation and anomalib's)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


def neighbourhood_pool(features: torch.Tensor, kernel_size: int, out_dim: int) -> torch.Tensor:
    """Every location's k×k neighbourhood as a C·k² vector, average-pooled to ``out_dim`` values.

    Equal to ``F.unfold(features, k, padding=k // 2)`` followed by ``F.adaptive_avg_pool1d`` over
    the C·k² axis, but the unfold (k²·C·H·W values) is never materialised. Each pooling bin is
    a contiguous run of the flattened (channel, window position) index, so it splits into a few
    (bin, channel) pieces, each a sum of shifted copies of one channel over a range of window
    positions. Memory is O((C + out_dim)·H·W), and every sum stays short (no long prefix sums).

    Args:
        features: ``(B, C, H, W)``.
        kernel_size: odd neighbourhood size k.
        out_dim: length of the pooled vector.

    Returns:
        ``(B, out_dim, H, W)``.

    Example:
        >>> neighbourhood_pool(torch.rand(2, 64, 32, 32), kernel_size=3, out_dim=128).shape
        torch.Size([2, 128, 32, 32])
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        msg = f"kernel_size must be a positive odd number, got {kernel_size}."
        raise ValueError(msg)
    batch, channels, height, width = features.shape
    piece_bin, piece_channel, weights, bin_sizes = (
        t.to(features.device) for t in _pooling_plan(channels, kernel_size, out_dim)
    )
    padded = F.pad(features, [kernel_size // 2] * 4)
    source = padded[:, piece_channel]
    pieces = features.new_zeros(batch, len(piece_bin), height, width)
    for position in range(kernel_size * kernel_size):  # fixed trip count, export-safe
        row, column = divmod(position, kernel_size)
        shifted = source[:, :, row : row + height, column : column + width]
        pieces.addcmul_(shifted, weights[position].to(features.dtype).view(1, -1, 1, 1))
    sums = features.new_zeros(batch, out_dim, height, width).index_add_(1, piece_bin, pieces)
    return sums / bin_sizes.to(features.dtype).view(1, -1, 1, 1)


@lru_cache(maxsize=32)
def _pooling_plan(channels: int, kernel_size: int, out_dim: int) -> tuple[torch.Tensor, ...]:
    """Split each ``adaptive_avg_pool1d`` bin over the C·k² index into per-channel pieces.

    Returns, per piece, its bin and channel, a ``(k², pieces)`` 0/1 matrix telling which window
    positions of that channel fall in the bin, and each bin's size. Plain Python on shapes only,
    so exported graphs see constants.
    """
    window = kernel_size * kernel_size
    length = channels * window
    piece_bin, piece_channel, ranges, bin_sizes = [], [], [], []
    for index in range(out_dim):
        start = index * length // out_dim
        end = -(-(index + 1) * length // out_dim)  # ceil, as adaptive pooling does
        bin_sizes.append(end - start)
        for channel in range(start // window, (end - 1) // window + 1):
            piece_bin.append(index)
            piece_channel.append(channel)
            ranges.append((max(start - channel * window, 0), min(end - channel * window, window)))
    positions = torch.arange(window).view(-1, 1)
    low, high = torch.tensor(ranges).T
    weights = ((positions >= low) & (positions < high)).float()
    return torch.tensor(piece_bin), torch.tensor(piece_channel), weights, torch.tensor(bin_sizes)


def pool_concatenated(maps: Sequence[torch.Tensor], out_dim: int) -> torch.Tensor:
    """``maps`` upsampled to the first one's grid, concatenated, channels average-pooled to ``out_dim``.

    Equal to ``neighbourhood_pool(torch.cat(upsampled maps, 1), 1, out_dim)``, i.e.
    ``adaptive_avg_pool1d`` over the concatenated channel axis, without building the
    concatenation: bilinear upsampling treats every channel alone, so each map's share of each
    pooling bin is summed at the map's own resolution first and only those sums are upsampled.

    Example:
        >>> pool_concatenated([torch.rand(1, 512, 32, 32), torch.rand(1, 512, 16, 16)], 512).shape
        torch.Size([1, 512, 32, 32])
    """
    plan, bin_sizes = _concatenation_plan(tuple(m.shape[1] for m in maps), out_dim)
    first = maps[0]
    sums = first.new_zeros(first.shape[0], out_dim, *first.shape[-2:])
    for features, (low, high, bins, channels) in zip(maps, plan, strict=True):
        share = features.new_zeros(features.shape[0], high - low, *features.shape[-2:])
        share.index_add_(1, bins.to(features.device), features[:, channels.to(features.device)])
        sums[:, low:high] += _resize(share, first.shape[-2:])
    return sums / bin_sizes.to(sums).view(1, -1, 1, 1)


@lru_cache(maxsize=32)
def _concatenation_plan(channel_counts: tuple[int, ...], out_dim: int) -> tuple[list, torch.Tensor]:
    """Per map: the bins ``[low, high)`` it touches, each channel's bin (from ``low``), the channels.

    A channel on the border of two ``adaptive_avg_pool1d`` bins is listed once per bin.
    """
    total = sum(channel_counts)
    starts = [index * total // out_dim for index in range(out_dim)]
    ends = [-(-(index + 1) * total // out_dim) for index in range(out_dim)]
    plan, offset = [], 0
    for count in channel_counts:
        pieces = [
            (index, channel - offset)
            for index in range(out_dim)
            for channel in range(max(starts[index], offset), min(ends[index], offset + count))
        ]
        low, high = pieces[0][0], pieces[-1][0] + 1
        bins, channels = zip(*pieces, strict=True)
        plan.append((low, high, torch.tensor(bins) - low, torch.tensor(channels)))
        offset += count
    return plan, torch.tensor([end - start for start, end in zip(starts, ends, strict=True)])


# REB's code pools every backbone to one embedding length: 512 for ResNet-18 (and VGG-11), 1024
# for the deeper ResNets; architectures REB never used keep 512.
REB_EMBEDDING_DIMS = {
    "resnet18": 512,
    "vgg11_bn": 512,
    "wide_resnet50_2": 1024,
    "resnet101": 1024,
    "wide_resnet101_2": 1024,
}


def reb_embedding_dim(backbone: str) -> int:
    """REB's embedding length D for a timm backbone name (a ``name.tag`` counts as its ``name``).

    Example:
        >>> reb_embedding_dim("wide_resnet50_2.tv_in1k")
        1024
    """
    return REB_EMBEDDING_DIMS.get(backbone.split(".", maxsplit=1)[0], 512)


AGGREGATIONS = ("reference", "anomalib")


def check_embedding(embedding_dim: int, aggregation: str) -> None:
    """Refuse an unknown aggregation or a non-positive embedding length, naming the argument."""
    if aggregation not in AGGREGATIONS:
        msg = f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}."
        raise ValueError(msg)
    if embedding_dim < 1:
        msg = f"embedding_dim must be a positive integer, got {embedding_dim}."
        raise ValueError(msg)


class PatchEmbedding(nn.Module):
    """Turns multi-layer feature maps into one embedding per location of the first map.

    ``aggregation="reference"`` is PatchCore's reference code (as used by REB): each layer's
    3×3 neighbourhoods pooled to ``embedding_dim`` (:func:`neighbourhood_pool`), deeper layers
    upsampled bilinearly, the per-layer vectors pooled together to ``embedding_dim``.
    ``aggregation="anomalib"`` is anomalib's Patchcore: ``AvgPool2d(3, 1, 1)`` per layer, bilinear
    upsampling, concatenation (``embedding_dim`` unused).

    Example:
        >>> embed = PatchEmbedding(embedding_dim=512)
        >>> embed([torch.rand(1, 128, 32, 32), torch.rand(1, 256, 16, 16)]).shape
        torch.Size([1, 512, 32, 32])
    """

    def __init__(self, embedding_dim: int = 512, aggregation: str = "reference", patch_size: int = 3) -> None:
        super().__init__()
        check_embedding(embedding_dim, aggregation)
        self.embedding_dim = embedding_dim
        self.aggregation = aggregation
        self.patch_size = patch_size

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(B, D, H, W)`` on the grid of ``features[0]``."""
        size = features[0].shape[-2:]
        if self.aggregation == "anomalib":
            pooled = [
                F.avg_pool2d(f, self.patch_size, stride=1, padding=self.patch_size // 2) for f in features
            ]
            return torch.cat([_resize(f, size) for f in pooled], dim=1)
        layers = [neighbourhood_pool(f, self.patch_size, self.embedding_dim) for f in features]
        return pool_concatenated(layers, self.embedding_dim)


def _resize(features: torch.Tensor, size: torch.Size) -> torch.Tensor:
    if features.shape[-2:] == size:
        return features
    return F.interpolate(features, size=size, mode="bilinear", align_corners=False)
