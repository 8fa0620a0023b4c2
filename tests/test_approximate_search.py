"""The approximate neighbour search: agreement with the exact one, export parity, checkpoints, bad input."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.deploy import ExportType
from lightning.pytorch import seed_everything
from test_ldknn_engine import _assert_scores_match, _datamodule, _engine, _model, test_images

from anomalib_pdae import Ldknn, Reb
from anomalib_pdae.models.components import NeighbourSearch, nearest_neighbours
from anomalib_pdae.models.ldknn import LdknnModel, LdknnSettings
from tests.openvino_outputs import run_exported

__all__ = ["test_images"]  # the fixture, shared with the exact search's tests

APPROXIMATE = {"search": "approximate", "candidates": 8, "projection_dim": 16}


def _low_rank_rows(count: int, generator: torch.Generator) -> torch.Tensor:
    """Rows of width 64 whose variance lies mostly in 8 directions, like patch embeddings."""
    basis = torch.randn(8, 64, generator=generator)
    return torch.randn(count, 8, generator=generator) @ basis + 0.1 * torch.randn(
        count, 64, generator=generator
    )


def test_approximate_finds_the_exact_neighbours_on_a_small_bank() -> None:
    generator = torch.Generator().manual_seed(0)
    bank, queries = _low_rank_rows(2000, generator), _low_rank_rows(500, generator)
    search = NeighbourSearch("approximate", candidates=16, projection_dim=8)
    search.fit(bank)
    distances, indices = search(queries, bank, k=3)
    exact_distances, exact_indices = nearest_neighbours(queries, bank, k=3)
    found = indices[:, 0] == exact_indices[:, 0]
    assert found.float().mean() >= 0.95
    # a neighbour found is scored by its exact distance; a miss can only be farther
    torch.testing.assert_close(distances[found], exact_distances[found], rtol=1e-4, atol=1e-3)
    assert (distances[:, 0] >= exact_distances[:, 0] - 1e-3).all()
    assert (distances.diff(dim=1) >= 0).all()


def test_approximate_with_every_row_as_candidate_is_exact() -> None:
    generator = torch.Generator().manual_seed(1)
    bank, queries = torch.randn(300, 32, generator=generator), torch.randn(50, 32, generator=generator)
    search = NeighbourSearch("approximate", candidates=300, projection_dim=2)
    search.fit(bank)
    distances, indices = search(queries, bank, k=2)
    exact_distances, exact_indices = nearest_neighbours(queries, bank, k=2)
    torch.testing.assert_close(indices, exact_indices, rtol=0, atol=0)
    torch.testing.assert_close(distances, exact_distances, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def both(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same Ldknn (same random backbone, same bank) fitted with each search."""
    models = {}
    for search in ("exact", "approximate"):
        tmp = tmp_path_factory.mktemp(search)
        seed_everything(0)
        model = _model(**(APPROXIMATE if search == "approximate" else {}))
        engine = _engine(tmp)
        engine.fit(model, datamodule=_datamodule(synthetic_root))
        checkpoint = tmp / "final.ckpt"
        engine.trainer.save_checkpoint(checkpoint)
        models[search] = {"model": model.eval(), "engine": engine, "checkpoint": checkpoint}
    return models


def test_ldknn_scores_agree_with_the_exact_search(both: dict, test_images: torch.Tensor) -> None:
    exact, approximate = both["exact"]["model"], both["approximate"]["model"]
    torch.testing.assert_close(approximate.model.memory_bank, exact.model.memory_bank, rtol=0, atol=0)
    assert approximate.model.search.projected_bank.shape == (len(exact.model.memory_bank), 16)
    with torch.no_grad():
        expected, got = exact(test_images), approximate(test_images)
    torch.testing.assert_close(got.pred_score, expected.pred_score, rtol=0.02, atol=0.0)
    assert got.pred_score.argsort().tolist() == expected.pred_score.argsort().tolist()
    correlation = np.corrcoef(got.anomaly_map.flatten().numpy(), expected.anomaly_map.flatten().numpy())[0, 1]
    assert correlation > 0.99


def test_checkpoint_round_trip_keeps_the_projection(both: dict, test_images: torch.Tensor) -> None:
    model = both["approximate"]["model"]
    loaded = Ldknn.load_from_checkpoint(both["approximate"]["checkpoint"]).eval()
    assert loaded.model.search.mode == "approximate" and loaded.model.search.candidates == 8
    torch.testing.assert_close(loaded.model.search.projection, model.model.search.projection, rtol=0, atol=0)
    with torch.no_grad():
        expected, got = model(test_images), loaded(test_images)
    torch.testing.assert_close(got.pred_score, expected.pred_score, rtol=0, atol=0)
    torch.testing.assert_close(got.anomaly_map, expected.anomaly_map, rtol=0, atol=0)


def test_rescoring_the_exact_bank_approximately_equals_fitting_approximately(
    both: dict, test_images: torch.Tensor
) -> None:
    """The raw scores of the torch models (each Lightning model normalises with its own statistics)."""
    rescored, approximate = copy.deepcopy(both["exact"]["model"].model), both["approximate"]["model"].model
    rescored.rescore(**APPROXIMATE)
    assert rescored.settings == approximate.settings
    with torch.no_grad():
        expected, got = approximate(test_images), rescored(test_images)
    torch.testing.assert_close(got.pred_score, expected.pred_score, rtol=0, atol=0)
    torch.testing.assert_close(got.anomaly_map, expected.anomaly_map, rtol=0, atol=0)


@pytest.fixture(scope="module")
def openvino_model(both: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    engine, model = both["approximate"]["engine"], both["approximate"]["model"]
    return engine.export(model, ExportType.OPENVINO, export_root=tmp_path_factory.mktemp("openvino"))


@pytest.mark.parametrize("batch", [1, 3])
def test_openvino_export_matches_torch(
    both: dict, openvino_model: Path, test_images: torch.Tensor, batch: int
) -> None:
    assert openvino_model.suffix == ".xml"
    images = test_images[:batch]
    with torch.no_grad():
        expected = both["approximate"]["model"](images)
    got = run_exported(openvino_model, images)
    _assert_scores_match(got, expected, batch)
    assert len(set(expected.pred_score.tolist())) == batch


SMALL = {"backbone": "resnet18", "layers": ("layer2", "layer3"), "embedding_dim": 64}


def _small(**settings) -> LdknnModel:
    return LdknnModel(LdknnSettings(**SMALL, **settings), pre_trained=False)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"candidates": 0}, "candidates"),
        ({"candidates": -3}, "candidates"),
        ({"candidates": 2, "k": 3, "scorer": "knn"}, "candidates=2 must be >= k=3"),
        ({"projection_dim": 65}, "projection_dim=65 is wider than the features it reduces"),
        ({"projection_dim": 0}, "projection_dim"),
        ({"search": "fast"}, "search must be one of 'exact', 'approximate'"),
    ],
)
@pytest.mark.parametrize("model_class", [LdknnSettings, Ldknn, Reb])
def test_bad_search_parameters_are_refused_at_construction(
    model_class, arguments: dict, message: str
) -> None:
    arguments = {"search": "approximate"} | arguments
    weights = {} if model_class is LdknnSettings else {"pre_trained": False}
    with pytest.raises(ValueError, match=message):
        model_class(**SMALL, **weights, **arguments)


def test_ldknn_needs_no_more_candidates_than_its_one_nearest_memory_point() -> None:
    """K sets the fit-time densities only; forward searches one neighbour, so 2 candidates serve K=5."""
    model = _small(k=5, search="approximate", candidates=2, projection_dim=8).train()
    model.fit(model(torch.rand(2, 3, 64, 64)), progress=False)
    assert model.eval()(torch.rand(1, 3, 64, 64)).pred_score.isfinite().all()
    with pytest.raises(ValueError, match="candidates=2 must be >= k=5"):
        model.rescore(scorer="knn")


def test_more_candidates_than_bank_rows_is_refused_at_fit() -> None:
    model = _small(k=2, search="approximate", candidates=40, projection_dim=8).train()
    embeddings = model(torch.rand(1, 3, 32, 32))  # 4 × 4 patches: 16 rows
    with pytest.raises(ValueError, match="candidates=40 exceeds the memory bank"):
        model.fit(embeddings, progress=False)
    assert model.memory_bank.numel() == 0


def test_exact_search_ignores_the_approximate_parameters() -> None:
    model = _small(search="exact", candidates=1000, projection_dim=16).train()
    model.fit(model(torch.rand(1, 3, 32, 32)), progress=False)
    assert model.search.projection.numel() == 0
