"""Fits that stream their rows from an EmbeddingStore on disk give what fits on one tensor give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_pdae import Ldknn
from anomalib_pdae.models.components import embedding_store, greedy_coreset
from anomalib_pdae.models.components.embedding_store import EmbeddingStore
from anomalib_pdae.models.components.search import faiss_knn, knn_reranked
from anomalib_pdae.models.ldknn import LdknnModel, LdknnSettings
from tests.test_density_search import _clustered


def _spilled(rows: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> EmbeddingStore:
    """``rows`` in a store of 300-row blocks, all on disk but the last."""
    monkeypatch.setattr(embedding_store, "BLOCK_BYTES", 300 * rows[0].numel() * 4)
    store = EmbeddingStore(memory_bytes=0)
    for batch in rows.split(128):
        store.append(batch)
    assert store.spilled
    return store


def test_exact_search_over_disk_blocks_equals_one_bank(monkeypatch: pytest.MonkeyPatch) -> None:
    bank = _clustered(2000, 48)
    store = _spilled(bank, monkeypatch)
    expected = faiss_knn(bank[::7], bank, k=4, exclude_self=True)
    found = faiss_knn(bank[::7], store, k=4, exclude_self=True)
    np.testing.assert_allclose(found[0], expected[0], rtol=1e-5, atol=1e-5)
    assert (found[1] == expected[1]).mean() > 0.99  # equal up to ties


def test_approximate_search_over_disk_blocks_equals_one_bank(monkeypatch: pytest.MonkeyPatch) -> None:
    bank = _clustered(2000, 48, seed=3)
    store = _spilled(bank, monkeypatch)
    expected = knn_reranked(bank[::5], bank, 5, exclude_self=True)
    found = knn_reranked(bank[::5], store, 5, exclude_self=True)
    np.testing.assert_allclose(found[0], expected[0], rtol=1e-5, atol=1e-5)
    assert (found[1] == expected[1]).mean() > 0.99


def test_coreset_of_a_store_is_the_coreset_of_its_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    bank = _clustered(3000, 256, seed=4)
    store = _spilled(bank, monkeypatch)
    expected = greedy_coreset(bank, 0.1, progress=False)
    found = greedy_coreset(store, 0.1, progress=False)
    assert len(np.intersect1d(found, expected)) >= 0.99 * len(expected)


@pytest.mark.parametrize("density_search", ["exact", "approximate"])
def test_ldknn_fit_from_a_spilled_store_equals_the_fit_from_one_tensor(
    density_search: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = _clustered(3000, 64, seed=5)
    settings = LdknnSettings(
        backbone="resnet18", embedding_dim=64, coreset_ratio=0.2, density_search=density_search
    )
    expected, streamed = LdknnModel(settings, pre_trained=False), LdknnModel(settings, pre_trained=False)
    expected.fit(bank, progress=False)
    streamed.fit(_spilled(bank, monkeypatch), progress=False)
    torch.testing.assert_close(streamed.memory_bank, expected.memory_bank)
    torch.testing.assert_close(streamed.local_density, expected.local_density, rtol=1e-4, atol=1e-5)
    queries = _clustered(200, 64, seed=6)
    torch.testing.assert_close(
        streamed.search(queries, streamed.memory_bank)[0], expected.search(queries, expected.memory_bank)[0]
    )


def test_whole_bank_from_a_spilled_store(monkeypatch: pytest.MonkeyPatch) -> None:
    bank = _clustered(900, 32, seed=7)
    model = LdknnModel(LdknnSettings(backbone="resnet18", embedding_dim=32), pre_trained=False)
    model.fit(_spilled(bank, monkeypatch), progress=False)
    torch.testing.assert_close(model.memory_bank, bank)


def test_engine_fit_past_the_memory_budget_matches_the_fit_in_memory(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through anomalib's Engine: the rows go to disk, the bank and the test scores are the same."""
    monkeypatch.setattr(embedding_store, "BLOCK_BYTES", 2**18)
    scores = {}
    for budget in (None, 0):
        monkeypatch.setattr(Ldknn, "embedding_memory_bytes", budget)
        seed_everything(0)
        model = Ldknn(
            backbone="resnet18",
            pre_trained=False,
            k=3,
            embedding_dim=64,
            coreset_ratio=0.5,
            pre_processor=Ldknn.configure_pre_processor((64, 64)),
        )
        spilled = []
        monkeypatch.setattr(model.model, "fit", _recording(model.model.fit, spilled))
        datamodule = MVTecAD(
            root=synthetic_root, category="synthetic", train_batch_size=8, eval_batch_size=8, num_workers=0
        )
        engine = Engine(default_root_dir=tmp_path / str(budget), logger=False, enable_progress_bar=False)
        engine.fit(model, datamodule=datamodule)
        assert spilled == [budget == 0]
        assert not model.embeddings  # handed over and emptied
        scores[budget] = engine.predict(model, datamodule=datamodule, return_predictions=True)
    for expected, found in zip(scores[None], scores[0], strict=True):
        torch.testing.assert_close(found.pred_score, expected.pred_score)
        torch.testing.assert_close(found.anomaly_map, expected.anomaly_map)


def _recording(fit, spilled: list):
    def record(embeddings, *args, **kwargs):
        spilled.append(isinstance(embeddings, EmbeddingStore))
        return fit(embeddings, *args, **kwargs)

    return record
