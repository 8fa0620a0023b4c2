"""Ldknn through anomalib's Engine on generated data: fit, test, checkpoints and the three export types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.data.utils import read_image
from anomalib.deploy import ExportType, TorchInferencer
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_pdae import Ldknn
from tests.openvino_outputs import run_exported

SIZE = 64
MODEL_ARGS = {"backbone": "resnet18", "pre_trained": False, "k": 3, "embedding_dim": 64}


def _model(**kwargs) -> Ldknn:
    return Ldknn(**(MODEL_ARGS | kwargs), pre_processor=Ldknn.configure_pre_processor((SIZE, SIZE)))


def _datamodule(root: Path) -> MVTecAD:
    return MVTecAD(root=root, category="synthetic", train_batch_size=8, eval_batch_size=8, num_workers=0)


def _engine(tmp: Path) -> Engine:
    return Engine(default_root_dir=tmp, logger=False, enable_progress_bar=False)


@pytest.fixture(scope="module")
def trained(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("ldknn")
    seed_everything(0)
    model = _model()
    engine = _engine(tmp)
    engine.fit(model, datamodule=_datamodule(synthetic_root))
    checkpoint = tmp / "final.ckpt"
    engine.trainer.save_checkpoint(checkpoint)
    return {"model": model.eval(), "engine": engine, "checkpoint": checkpoint}


@pytest.fixture(scope="module")
def test_images(synthetic_root: Path) -> torch.Tensor:
    """Three generated test images at their stored 96 px (the model resizes them itself)."""
    folder = synthetic_root / "synthetic" / "test"
    paths = [folder / "good" / "000.png", folder / "defect" / "000.png", folder / "defect" / "001.png"]
    return torch.stack([read_image(path, as_tensor=True) for path in paths])


def test_engine_fit_and_test(trained: dict, synthetic_root: Path) -> None:
    model = trained["model"]
    # MVTecAD validates on its test split by default, so all 24 training images are in the bank
    assert model.model.memory_bank.shape == (24 * 8 * 8, 64)
    assert model.model.local_density.shape == (24 * 8 * 8,)
    results = trained["engine"].test(model, datamodule=_datamodule(synthetic_root), verbose=False)
    assert results[0]["image_AUROC"] >= 0.9
    assert results[0]["pixel_AUROC"] >= 0.9


def test_checkpoint_round_trip_gives_identical_scores(trained: dict, test_images: torch.Tensor) -> None:
    model = trained["model"]
    loaded = Ldknn.load_from_checkpoint(trained["checkpoint"]).eval()
    assert loaded.model.settings.k == 3 and loaded.model.memory_bank.shape == model.model.memory_bank.shape
    with torch.no_grad():
        expected, got = model(test_images), loaded(test_images)
    assert got.anomaly_map.shape[-2:] == (SIZE, SIZE)  # the pre-processor came back too
    torch.testing.assert_close(got.pred_score, expected.pred_score, rtol=0, atol=0)
    torch.testing.assert_close(got.anomaly_map, expected.anomaly_map, rtol=0, atol=0)


def _assert_scores_match(got: dict, expected, batch: int) -> None:
    for name in ("pred_score", "anomaly_map"):
        want = getattr(expected, name).numpy()
        value = np.asarray(got[name])
        assert value.shape[0] == batch
        np.testing.assert_allclose(value.reshape(want.shape), want, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def exported(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[ExportType, Path]:
    """ONNX and torch exports; the OpenVINO export is checked through `anomalib export` (test_plugin_cli)."""
    root = tmp_path_factory.mktemp("export")
    engine, model = trained["engine"], trained["model"]
    return {
        export_type: engine.export(model, export_type, export_root=root / export_type.value)
        for export_type in (ExportType.ONNX, ExportType.TORCH)
    }


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_export_matches_torch(
    trained: dict, exported: dict, test_images: torch.Tensor, batch: int
) -> None:
    """onnxruntime is not a dependency: the .onnx file is run by OpenVINO's ONNX reader."""
    path = exported[ExportType.ONNX]
    assert path.suffix == ".onnx"
    images = test_images[:batch]
    with torch.no_grad():
        expected = trained["model"](images)
    got = run_exported(path, images)
    _assert_scores_match(got, expected, batch)
    assert len(set(expected.pred_score.tolist())) == batch  # the images really score differently


@pytest.mark.parametrize("batch", [1, 3])
def test_torch_inferencer_matches_torch(
    trained: dict, exported: dict, test_images: torch.Tensor, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")  # the pickled model was written by this test
    images = test_images[:batch]
    with torch.no_grad():
        expected = trained["model"](images)
    predictions = TorchInferencer(exported[ExportType.TORCH], device="cpu").predict(images)
    _assert_scores_match(
        {"pred_score": predictions.pred_score.detach(), "anomaly_map": predictions.anomaly_map.detach()},
        expected,
        batch,
    )


@pytest.mark.parametrize("export_type", [ExportType.OPENVINO, ExportType.ONNX, ExportType.TORCH])
def test_export_of_unfitted_model_names_the_cause(export_type: ExportType, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="LDKNN is not fitted: its memory bank is empty"):
        _engine(tmp_path).export(_model(), export_type, export_root=tmp_path)
