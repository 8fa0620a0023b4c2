"""Patch embedding: the unfold-free pooling against a plain unfold reference."""

import pytest
import torch
import torch.nn.functional as F

from anomalib_pdae.models.components import PatchEmbedding, neighbourhood_pool
from anomalib_pdae.models.components.embedding import pool_concatenated


def unfold_pool(features: torch.Tensor, kernel_size: int, out_dim: int) -> torch.Tensor:
    """Slow, obvious reference: materialise every neighbourhood, then adaptive-pool it."""
    batch, _, height, width = features.shape
    patches = F.unfold(features, kernel_size, padding=kernel_size // 2).transpose(1, 2)
    pooled = F.adaptive_avg_pool1d(patches.reshape(batch * height * width, 1, -1), out_dim)
    return pooled.reshape(batch, height, width, out_dim).permute(0, 3, 1, 2)


@pytest.mark.parametrize(
    ("shape", "kernel_size", "out_dim"),
    [
        ((2, 5, 7, 6), 3, 4),  # bins span several channels
        ((1, 128, 16, 16), 3, 512),  # ResNet-18 layer2 → D = 512
        ((2, 7, 5, 9), 5, 64),  # odd sizes, PDAE's k = 5
        ((1, 3, 4, 4), 1, 2),
        ((1, 960, 12, 12), 5, 512),  # PDAE's channel count
        ((2, 16, 8, 8), 3, 1000),  # out_dim larger than C·k²: bins overlap
        ((1, 13, 6, 6), 3, 31),  # nothing divides
    ],
)
def test_neighbourhood_pool_equals_unfold_reference(shape, kernel_size, out_dim):
    generator = torch.Generator().manual_seed(sum(shape) + kernel_size + out_dim)
    features = torch.randn(shape, generator=generator) * 3 + 1
    expected = unfold_pool(features, kernel_size, out_dim)
    torch.testing.assert_close(
        neighbourhood_pool(features, kernel_size, out_dim), expected, atol=1e-5, rtol=1e-5
    )


def test_neighbourhood_pool_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        neighbourhood_pool(torch.rand(1, 2, 4, 4), 2, 4)


@pytest.mark.parametrize(
    ("shapes", "out_dim"),
    [
        (((2, 16, 8, 8), (2, 16, 4, 4)), 16),  # L·D → D: every bin inside one map
        (((1, 7, 9, 9), (1, 5, 4, 4), (1, 3, 3, 3)), 4),  # bins straddle maps
        (((1, 3, 8, 8), (1, 10, 4, 4)), 6),  # uneven bins
        (((1, 4, 6, 6), (1, 2, 3, 3)), 9),  # more bins than channels: bins overlap
    ],
)
def test_pool_concatenated_equals_upsample_concat_pool(shapes, out_dim):
    generator = torch.Generator().manual_seed(out_dim)
    maps = [torch.randn(shape, generator=generator) for shape in shapes]
    grid = maps[0].shape[-2:]
    upsampled = [F.interpolate(m, size=grid, mode="bilinear", align_corners=False) for m in maps]
    expected = unfold_pool(torch.cat(upsampled, dim=1), 1, out_dim)
    torch.testing.assert_close(pool_concatenated(maps, out_dim), expected, atol=1e-5, rtol=1e-5)


def test_reference_aggregation_matches_patchcore_reference_steps():
    """Unfold per layer → pool to D → upsample deeper layer → stack → pool to D (PatchCore code)."""
    generator = torch.Generator().manual_seed(0)
    shallow, deep = (
        torch.randn(2, 12, 8, 8, generator=generator),
        torch.randn(2, 20, 4, 4, generator=generator),
    )
    dim = 16
    per_layer = [unfold_pool(shallow, 3, dim), unfold_pool(deep, 3, dim)]
    per_layer[1] = F.interpolate(per_layer[1], size=(8, 8), mode="bilinear", align_corners=False)
    stacked = torch.stack([p.permute(0, 2, 3, 1).reshape(-1, dim) for p in per_layer], dim=1).reshape(
        -1, 1, 2 * dim
    )
    expected = F.adaptive_avg_pool1d(stacked, dim).reshape(2, 8, 8, dim).permute(0, 3, 1, 2)
    torch.testing.assert_close(PatchEmbedding(dim)([shallow, deep]), expected, atol=1e-5, rtol=1e-5)


def test_anomalib_aggregation_is_avgpool_and_concat():
    shallow, deep = torch.rand(1, 4, 8, 8), torch.rand(1, 6, 4, 4)
    out = PatchEmbedding(aggregation="anomalib")([shallow, deep])
    pool = torch.nn.AvgPool2d(3, 1, 1)
    expected = torch.cat([pool(shallow), F.interpolate(pool(deep), size=(8, 8), mode="bilinear")], dim=1)
    torch.testing.assert_close(out, expected)


def test_unknown_aggregation_is_rejected():
    with pytest.raises(ValueError, match="aggregation must be one of"):
        PatchEmbedding(aggregation="mean")
