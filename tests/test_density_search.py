"""Fit-time local densities found by the approximate search (bfloat16 candidates, exact re-rank)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalib_pdae.models.components.search import faiss_knn, knn_reranked
from anomalib_pdae.models.ldknn import LdknnModel, LdknnSettings


def _clustered(rows: int, width: int, seed: int = 0) -> torch.Tensor:
    """Patch-like rows: few dominant directions plus small isotropic noise."""
    generator = torch.Generator().manual_seed(seed)
    low_rank = torch.randn(rows, 12, generator=generator) @ torch.randn(12, width, generator=generator)
    return (low_rank + 0.05 * torch.randn(rows, width, generator=generator)).relu()


def test_reranked_neighbours_are_the_exact_ones_on_patch_like_rows() -> None:
    bank = _clustered(4000, 96)
    queries = bank[::10]
    exact_distances, exact_indices = faiss_knn(queries, bank, k=5, exclude_self=True)
    distances, indices = knn_reranked(queries, bank, 5, True, candidates=16)
    assert (indices == exact_indices).mean() > 0.99
    np.testing.assert_allclose(distances.mean(1), exact_distances.mean(1), rtol=1e-3, atol=1e-4)


def test_returned_distances_are_exact_for_the_rows_returned() -> None:
    """Even with no spare candidates, each distance returned is the true one."""
    bank = _clustered(2000, 64, seed=1)
    queries = bank[:50]
    distances, indices = knn_reranked(queries, bank, 3, True, candidates=1)
    true = ((queries[:, None, :] - bank[torch.from_numpy(indices)]) ** 2).sum(-1).numpy()
    np.testing.assert_allclose(distances, true, rtol=1e-4, atol=1e-3)
    assert (indices != np.arange(50)[:, None]).all()  # the point itself is excluded


def test_ldknn_fit_with_approximate_densities_is_close_to_exact() -> None:
    bank = _clustered(3000, 64, seed=2)
    models = {}
    for mode in ("exact", "approximate"):
        settings = LdknnSettings(
            backbone="resnet18", embedding_dim=64, coreset_ratio=0.2, density_search=mode
        )
        models[mode] = LdknnModel(settings, pre_trained=False)
        models[mode].fit(bank, progress=False)
    torch.testing.assert_close(models["approximate"].memory_bank, models["exact"].memory_bank)
    torch.testing.assert_close(
        models["approximate"].local_density, models["exact"].local_density, rtol=1e-3, atol=1e-4
    )


def test_an_unknown_density_search_is_refused() -> None:
    with pytest.raises(ValueError, match="density_search must be one of 'exact', 'approximate'"):
        LdknnSettings(density_search="fast")
