"""The plugin seen by an unmodified anomalib: every spelling through the real CLI, in subprocesses."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data.utils import read_image
from anomalib.deploy import OpenVINOInferencer
from PIL import Image

from anomalib_pdae import Ldknn
from anomalib_pdae.data.synthetic import make_synthetic_dataset
from anomalib_pdae.deploy import EXACT_CPU_CONFIG

ANOMALIB = str(Path(sys.executable).with_name("anomalib"))
CHECKOUT = Path(__file__).resolve().parents[1]
SIZE = 64
SMALL_MODEL = ("--model.pre_trained", "false", "--model.k", "3", "--model.embedding_dim", "32")
NO_PICTURES = ("--model.visualizer", "false")
RESIZE = (
    *("--model.pre_processor", "anomalib.pre_processing.PreProcessor"),
    *("--model.pre_processor.transform", "torchvision.transforms.v2.Resize"),
    *("--model.pre_processor.transform.size", f"[{SIZE}, {SIZE}]"),
)
LOADERS = ("--data.num_workers", "0", "--data.train_batch_size", "8", "--data.eval_batch_size", "8")
CONFIG = """\
model:
  class_path: {class_path}
  init_args:
    pre_trained: false
    k: 3
    embedding_dim: 32
    visualizer: false
    pre_processor:
      class_path: anomalib.pre_processing.PreProcessor
      init_args:
        transform:
          class_path: torchvision.transforms.v2.Resize
          init_args:
            size: [{size}, {size}]
"""


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False, **kwargs
    )


def _image_auroc(stdout: str) -> float:
    match = re.search(r"image_AUROC\s*│\s*([0-9.]+)", stdout)
    assert match, stdout[-3000:]
    return float(match.group(1))


def _data(root: Path) -> tuple[str, ...]:
    return ("--data", "MVTecAD", "--data.root", str(root), "--data.category", "synthetic", *LOADERS)


@pytest.fixture(scope="module")
def cli_checkpoint(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``anomalib train --model Ldknn``: trains, tests and writes a checkpoint."""
    out = tmp_path_factory.mktemp("cli_train")
    result = _run(
        [
            *(ANOMALIB, "train", "--model", "Ldknn", *SMALL_MODEL, *NO_PICTURES, *RESIZE),
            *_data(synthetic_root),
            *("--trainer.logger", "false", "--default_root_dir", str(out)),
        ]
    )
    assert _image_auroc(result.stdout) >= 0.9
    (checkpoint,) = out.rglob("model.ckpt")
    return checkpoint


def test_cli_export_openvino_matches_the_checkpoint(
    cli_checkpoint: Path, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # OpenVINOInferencer writes its cache to ./openvino_cache
    result = _run(
        [
            *(ANOMALIB, "export", "--model", "Ldknn", *SMALL_MODEL, "--export_type", "openvino"),
            *("--ckpt_path", str(cli_checkpoint), "--export_root", str(tmp_path)),
        ]
    )
    printed = result.stdout + result.stderr
    # Opset 18 needs no down-conversion (its fallback printed a traceback); no per-initialiser lines.
    assert "Traceback" not in printed and "Replaced initializer" not in printed, printed[-3000:]
    (xml,) = tmp_path.rglob("model.xml")
    model = Ldknn.load_from_checkpoint(cli_checkpoint).eval()
    inferencer = OpenVINOInferencer(xml, device="CPU", config=EXACT_CPU_CONFIG)
    paths = sorted((synthetic_root / "synthetic" / "test").rglob("00[01].png"))[:3]
    images = torch.stack([read_image(path, as_tensor=True) for path in paths])
    for batch in (1, 3):  # a dynamic batch
        with torch.no_grad():
            expected = model(images[:batch])
        got = inferencer.predict(images[:batch])
        assert len(set(expected.pred_score.tolist())) == batch  # the images really score differently
        np.testing.assert_allclose(got.pred_score.reshape(-1), expected.pred_score.numpy(), rtol=1e-4)
        # The maps are normalised to [0, 1]; near 0 the exported graph's float32 rounding differs
        # from torch's by up to ~2e-6 (seen in a CI run), so atol is 1e-5 of the map's range.
        assert expected.anomaly_map.min() >= 0 and expected.anomaly_map.max() <= 1
        np.testing.assert_allclose(
            got.anomaly_map.reshape(-1), expected.anomaly_map.numpy().reshape(-1), rtol=1e-4, atol=1e-5
        )


def test_cli_predict_on_a_folder_writes_panels(
    cli_checkpoint: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    """``anomalib predict --data FOLDER``: one panel (image | heat map | predicted mask, score) per image."""
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((synthetic_root / "synthetic" / "test").rglob("000.png")):
        shutil.copy(path, folder / f"{path.parent.name}.png")
    _run(
        [
            *(ANOMALIB, "predict", "--model", "Ldknn", *SMALL_MODEL, *RESIZE),
            *("--ckpt_path", str(cli_checkpoint), "--data", str(folder)),
            *("--default_root_dir", str(tmp_path / "out")),
        ]
    )
    panels = sorted((tmp_path / "out").rglob("*.png"))
    assert sorted(p.name for p in panels) == sorted(p.name for p in folder.iterdir())
    for panel in panels:
        width, height = Image.open(panel).size
        assert width == 3 * height  # no ground truth here: image, heat-map overlay, mask overlay


@pytest.mark.parametrize("class_path", ["Ldknn", "anomalib_pdae.Ldknn"])
def test_config_file_class_path(
    class_path: str, cli_checkpoint: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    config = tmp_path / "ldknn.yaml"
    config.write_text(CONFIG.format(class_path=class_path, size=SIZE))
    result = _run(
        [
            *(ANOMALIB, "test", "--config", str(config), *_data(synthetic_root)),
            *(
                "--ckpt_path",
                str(cli_checkpoint),
                "--trainer.logger",
                "false",
                "--default_root_dir",
                str(tmp_path),
            ),
        ]
    )
    assert _image_auroc(result.stdout) >= 0.9


def test_get_model_by_name_and_dict() -> None:
    from anomalib.models import get_model

    by_name = get_model("ldknn", pre_trained=False, k=2)
    by_dict = get_model({"class_path": "Ldknn", "init_args": {"pre_trained": False, "k": 4}})
    assert type(by_name) is Ldknn and by_name.model.settings.k == 2
    assert type(by_dict) is Ldknn and by_dict.model.settings.k == 4


def test_benchmark_with_ldknn_in_the_grid(tmp_path: Path) -> None:
    """anomalib's benchmark exits 0 even when a job fails, so the results file is what is checked."""
    make_synthetic_dataset(tmp_path / "data", n_train=4, n_test_good=2, n_test_defect=2, image_size=SIZE)
    config = tmp_path / "benchmark.yaml"
    config.write_text(
        "accelerator: [cpu]\n"
        "benchmark:\n"
        "  seed: 42\n"
        "  model:\n"
        "    grid:\n"
        "      - class_path: Ldknn\n"
        "        init_args: {pre_trained: false, k: 3, embedding_dim: 32, visualizer: false}\n"
        "  data:\n"
        "    class_path: MVTecAD\n"
        f"    init_args: {{root: '{tmp_path / 'data'}', category: synthetic, num_workers: 0}}\n"
    )
    _run([ANOMALIB, "benchmark", "--config", str(config)], cwd=tmp_path)
    (results,) = (tmp_path / "runs" / "benchmark").rglob("results.csv")
    with results.open() as file:
        (row,) = list(csv.DictReader(file))
    assert row["model.class_path"] == "Ldknn"
    assert float(row["image_AUROC"]) >= 0.9


def test_no_torch_without_anomalib() -> None:
    """The start-up hook runs in every process; it must not pull in torch (or anomalib) by itself."""
    result = _python(
        "import sys, json; import anomalib_pdae\n"
        "print(json.dumps(['anomalib_pdae.plugin' in sys.modules, 'torch' in sys.modules,"
        " 'anomalib' in sys.modules]))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[true, false, false]"


@pytest.fixture(scope="module")
def plugin_process(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One Python process with a broken fake plugin installed beside ours, reporting what it saw."""
    site = tmp_path_factory.mktemp("fake_site")
    info = site / "fake_plugin-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[anomalib.models]\nBroken = fake_broken_model:Broken\n")
    (site / "fake_broken_model.py").write_text("raise ImportError('fake plugin is broken')\n")
    result = _python(
        "import json, sys, warnings\n"
        "import anomalib_pdae.plugin as plugin\n"
        "calls = []\n"
        "register = plugin.register_models\n"
        "plugin.register_models = lambda module: calls.append(1) or register(module)\n"
        "plugin.install()\n"
        "plugin.install()\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import anomalib.models as models\n"
        "plugin.install()\n"
        "from anomalib.models import get_model\n"
        "print(json.dumps({\n"
        "    'finders': sum(type(f).__name__ == '_AnomalibFinder' for f in sys.meta_path),\n"
        "    'registrations': len(calls),\n"
        "    'listed': models.__all__.count('Ldknn'),\n"
        "    'warnings': [f'{w.category.__name__}: {w.message}' for w in caught],\n"
        "    'broken': hasattr(models, 'Broken'),\n"
        "    'ldknn': type(get_model('ldknn', pre_trained=False)).__name__,\n"
        "    'patchcore': type(get_model('patchcore', backbone='resnet18', pre_trained=False)).__name__,\n"
        "}))",
        # The fake site, then this checkout (not whichever copy of the package is installed).
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(CHECKOUT)])},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_install_is_idempotent(plugin_process: dict) -> None:
    """install() called by the start-up hook and three more times: one finder, one registration."""
    assert plugin_process["finders"] == 1
    assert plugin_process["registrations"] == 1
    assert plugin_process["listed"] == 1


def test_broken_plugin_warns_and_anomalib_keeps_working(plugin_process: dict) -> None:
    expected = (
        "RuntimeWarning: anomalib plugin model 'Broken' (fake_broken_model:Broken) could not be imported "
        "and is not available: ImportError: fake plugin is broken"
    )
    assert expected in plugin_process["warnings"]
    assert not plugin_process["broken"]
    assert plugin_process["ldknn"] == "Ldknn"
    assert plugin_process["patchcore"] == "Patchcore"
