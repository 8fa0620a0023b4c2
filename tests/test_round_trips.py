"""Round trips of all four models: checkpoint, OpenVINO export (plain and compressed), clean process."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.data.utils import read_image
from anomalib.deploy import CompressionType, ExportType, OpenVINOInferencer
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_pdae.deploy import EXACT_CPU_CONFIG
from tests.openvino_outputs import run_exported
from tests.small_models import MODELS, small_model

pytestmark = pytest.mark.slow

# A process that cannot import this package: isolated (``-I``: no PYTHONPATH, no user site) and
# without the site hook (``-S``: no ``anomalib_pdae.pth``, no editable install); only the
# environment's site-packages on the path.
CLEAN_PROCESS = """\
import importlib.util, json, sys
sys.path.append(sys.argv[1])
assert importlib.util.find_spec("anomalib_pdae") is None, "anomalib_pdae is importable"
from anomalib.deploy import OpenVINOInferencer
inferencer = OpenVINOInferencer(sys.argv[2], device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
scores = [float(inferencer.predict(path).pred_score.reshape(-1)[0]) for path in sys.argv[3:]]
assert not any(name.startswith("anomalib_pdae") for name in sys.modules)
print(json.dumps(scores))
"""


@pytest.fixture(scope="module", params=MODELS)
def fitted(request, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One model trained for one epoch through the Engine on the generated dataset."""
    name = request.param
    tmp = tmp_path_factory.mktemp(f"round_trip_{name}")
    seed_everything(0)
    model = small_model(name, tmp)
    datamodule = _datamodule(synthetic_root)
    engine = Engine(default_root_dir=tmp, logger=False, enable_progress_bar=False, max_epochs=1)
    engine.fit(model, datamodule=datamodule)
    (checkpoint,) = tmp.rglob("model.ckpt")
    paths = sorted((synthetic_root / "synthetic" / "test").rglob("00[01].png"))[:3]
    return {
        "name": name,
        "model": model.eval(),
        "engine": engine,
        "checkpoint": checkpoint,
        "paths": paths,
        "datamodule": datamodule,
    }


def _datamodule(synthetic_root: Path) -> MVTecAD:
    return MVTecAD(
        root=synthetic_root, category="synthetic", train_batch_size=8, eval_batch_size=8, num_workers=0
    )


def _images(paths: list[Path]) -> torch.Tensor:
    return torch.stack([read_image(path, as_tensor=True) for path in paths])


def _predict(model, images: torch.Tensor):
    with torch.no_grad():
        return model(images)


def test_checkpoint_gives_identical_scores(fitted: dict) -> None:
    model = fitted["model"]
    loaded = type(model).load_from_checkpoint(fitted["checkpoint"]).eval()
    images = _images(fitted["paths"])
    expected, got = _predict(model, images), _predict(loaded, images)
    assert len(set(expected.pred_score.tolist())) == 3  # the images really score differently
    torch.testing.assert_close(got.pred_score, expected.pred_score, rtol=0, atol=0)
    torch.testing.assert_close(got.anomaly_map, expected.anomaly_map, rtol=0, atol=0)


@pytest.fixture(scope="module")
def exported(fitted: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp(f"export_{fitted['name']}")
    return Path(fitted["engine"].export(fitted["model"], ExportType.OPENVINO, export_root=root))


def test_openvino_matches_torch_with_a_dynamic_batch(
    fitted: dict, exported: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Normalised scores and maps lie in [0, 1]: within 1e-4 of that range, for batches of 1 and 3."""
    monkeypatch.chdir(tmp_path)  # OpenVINOInferencer writes its cache to ./openvino_cache
    inferencer = OpenVINOInferencer(exported, device="CPU", config=EXACT_CPU_CONFIG)
    images = _images(fitted["paths"])
    for batch in (1, 3):
        expected = _predict(fitted["model"], images[:batch])
        got = inferencer.predict(images[:batch])
        np.testing.assert_allclose(got.pred_score.reshape(-1), expected.pred_score.numpy(), atol=1e-4)
        np.testing.assert_allclose(
            got.anomaly_map.reshape(-1), expected.anomaly_map.numpy().reshape(-1), atol=1e-4
        )


def test_export_loads_where_this_package_was_never_imported(
    fitted: dict, exported: Path, tmp_path: Path
) -> None:
    paths = [str(path) for path in fitted["paths"]]
    site_packages = sysconfig.get_paths()["purelib"]
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", CLEAN_PROCESS, site_packages, str(exported), *paths],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    expected = [float(_predict(fitted["model"], _images([Path(path)])).pred_score) for path in paths]
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_export_restores_the_in_place_activations(fitted: dict, exported: Path) -> None:
    """The export runs activations out of place (a faster trace) and puts the flags back."""
    assert sum(getattr(module, "inplace", None) is True for module in fitted["model"].modules()) > 0


def _compressed(fitted: dict, root: Path, compression_type: CompressionType) -> Path:
    return Path(
        fitted["engine"].export(
            fitted["model"],
            ExportType.OPENVINO,
            export_root=root,
            compression_type=compression_type,
            datamodule=fitted["datamodule"],
        )
    )


def test_fp16_export_scores_like_torch(fitted: dict, tmp_path: Path) -> None:
    """FP16 weights move scores and maps by a few per cent of their range; the ranking holds."""
    path = _compressed(fitted, tmp_path, CompressionType.FP16)
    images = _images(fitted["paths"])
    expected = _predict(fitted["model"], images)
    got = run_exported(path, images)
    np.testing.assert_allclose(got["pred_score"].reshape(-1), expected.pred_score.numpy(), atol=0.03)
    np.testing.assert_allclose(
        got["anomaly_map"].reshape(-1), expected.anomaly_map.numpy().reshape(-1), atol=0.03
    )
    assert got["pred_score"].reshape(-1).argsort().tolist() == expected.pred_score.numpy().argsort().tolist()


def test_int8_weights_export_scores_like_torch(fitted: dict, tmp_path: Path) -> None:
    """8-bit weights: normalised scores within 0.1 of torch's, maps within 0.1 on average."""
    path = _compressed(fitted, tmp_path, CompressionType.INT8)
    images = _images(fitted["paths"])
    expected = _predict(fitted["model"], images)
    got = run_exported(path, images)
    np.testing.assert_allclose(got["pred_score"].reshape(-1), expected.pred_score.numpy(), atol=0.1)
    assert got["anomaly_map"].shape == tuple(expected.anomaly_map.shape)
    assert np.abs(got["anomaly_map"] - expected.anomaly_map.numpy()).mean() < 0.1


@pytest.mark.parametrize("compression_type", [CompressionType.INT8_PTQ, CompressionType.INT8_ACQ])
def test_eight_bit_activations_are_refused_before_anything_is_written(
    fitted: dict, tmp_path: Path, compression_type: CompressionType
) -> None:
    export_root = tmp_path / "export"
    match = f"{fitted['name']} cannot be exported with compression_type={compression_type.value}: "
    with pytest.raises(ValueError, match=match):
        _compressed(fitted, export_root, compression_type)
    assert not export_root.exists()
