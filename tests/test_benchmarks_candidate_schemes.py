"""benchmarks/candidate_schemes.py: the two candidate schemes search correctly, and the report renders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anomalib_pdae.models.components.search import nearest_neighbours, squared_norms
from benchmarks import candidate_schemes
from benchmarks.candidate_schemes import CentreListSearch, SpatialParentSearch


def _true_distances(queries: torch.Tensor, bank: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return squared_norms(queries - bank[index[:, 0]])


def test_centre_lists_covering_the_bank_search_exactly() -> None:
    bank, queries = torch.randn(300, 16), torch.randn(40, 16)
    search = CentreListSearch(centres=8, list_length=300, probes=1)
    search.fit(bank)
    assert torch.equal(search(queries, bank)[1], nearest_neighbours(queries, bank)[1])


def test_short_centre_lists_return_true_distances_no_nearer_than_exact() -> None:
    bank, queries = torch.randn(300, 16), torch.randn(40, 16)
    search = CentreListSearch(centres=8, list_length=10, probes=2)
    search.fit(bank)
    assert search.lists.shape == (8, 10)
    distances, index = search(queries, bank)
    assert torch.allclose(distances[:, 0], _true_distances(queries, bank, index), atol=1e-4)
    assert (distances[:, 0] >= nearest_neighbours(queries, bank)[0][:, 0] - 1e-4).all()


def test_a_wider_window_of_parents_never_finds_a_farther_row() -> None:
    bank, queries = torch.randn(200, 8), torch.randn(2 * 8 * 8, 8)
    narrow = SpatialParentSearch(pool=2, candidates=3, window=1, grid=(8, 8))(queries, bank)
    wide = SpatialParentSearch(pool=2, candidates=3, window=3, grid=(8, 8))
    wide_distances, wide_index = wide(queries, bank)
    assert torch.allclose(wide_distances[:, 0], _true_distances(queries, bank, wide_index), atol=1e-4)
    assert (wide_distances <= narrow[0] + 1e-5).all()
    assert (wide_distances < narrow[0] - 1e-5).any()


def test_centre_lists_are_measured_against_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(candidate_schemes, "CENTRE_LISTS", [(4, 100, 4), (4, 5, 1)])
    bank = torch.randn(100, 8)
    rows = candidate_schemes.measure_centre_lists(bank, torch.randn(50, 8))
    assert rows[0]["recall"] == 1.0
    assert 0 <= rows[1]["recall"] < 1 and all(row["speed_up"] > 0 for row in rows)


def test_the_report_renders_both_tables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(candidate_schemes, "RESULTS", tmp_path / "candidate_schemes")
    parent = {"recall": 0.5, "image_auroc": 80.0, "pixel_auroc": 81.0, "scoring_ms": 50.0}
    result = {
        "bank": [25600, 512],
        "centre_lists": [{"centres": 512, "list_length": 16, "probes": 2, "recall": 0.25, "speed_up": 4.0}],
        "spatial_parents": {"exact": parent | {"recall": 1.0, "scoring_ms": 200.0}, "pool 2": parent},
        "load": 1.5,
    }
    candidate_schemes.write(result, "mobilenetv2_100")
    text = (tmp_path / "candidate_schemes.md").read_text()
    assert "| 512 | 16 | 2 | 32 | 0.2500 | 4.00× |" in text
    assert "| pool 2 | 0.5000 | 80.00 | 81.00 | 50.0 | 4.00× |" in text
