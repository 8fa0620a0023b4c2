"""A bad ``weights=`` file on anomalib's CLI: one ``error:`` line, exit status 2, nothing written.

Each case starts the real ``anomalib`` command in a subprocess, from an empty folder; the four
cases cover ``train``, ``test``, ``export`` and ``predict``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from anomalib_pdae import Ldknn
from anomalib_pdae.models.components.weights import WeightsFileNotFoundError

ANOMALIB = str(Path(sys.executable).with_name("anomalib"))
RICH_TRACEBACK_BOX = ("╭", "│", "╰")


def _fails_in_one_line(command: list[str], run_dir: Path, weights: Path, problem: str) -> None:
    """Runs ``command`` in the empty ``run_dir`` and checks how it failed."""
    run_dir.mkdir()
    result = subprocess.run(
        [ANOMALIB, *command, "--default_root_dir", str(run_dir / "results")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=run_dir,
    )
    printed = result.stdout + result.stderr
    assert result.returncode == 2, printed[-3000:]
    assert "Traceback" not in printed and not any(box in printed for box in RICH_TRACEBACK_BOX), printed
    (line,) = [line for line in printed.splitlines() if weights.name in line]
    assert line == result.stderr.splitlines()[-1]
    assert line.startswith("error: Backbone weights file") and str(weights) in line and problem in line, line
    assert not list(run_dir.rglob("*")), "a failed run wrote files"


def _data(root: Path) -> list[str]:
    return ["--data", "MVTecAD", "--data.root", str(root), "--data.category", "synthetic"]


def test_train_with_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    command = ["train", "--model", "Ldknn", "--model.weights", str(missing), *_data(tmp_path / "data")]
    _fails_in_one_line(command, tmp_path / "run", missing, "not found")


def test_test_with_a_file_of_another_architecture(mobilenet_weights: Path, tmp_path: Path) -> None:
    command = [
        *("test", "--model", "Ldknn", "--model.backbone", "tf_efficientnet_lite0"),
        *("--model.layers", "[blocks.2, blocks.4]", "--model.weights", str(mobilenet_weights)),
        *_data(tmp_path / "data"),
    ]
    _fails_in_one_line(
        command, tmp_path / "run", mobilenet_weights, "does not fit backbone 'tf_efficientnet_lite0'"
    )


def test_export_with_a_corrupt_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(bytes(range(256)) * 16)
    command = [
        *("export", "--model", "Ldknn", "--model.weights", str(corrupt)),
        *("--export_type", "openvino", "--ckpt_path", str(tmp_path / "model.ckpt")),
    ]
    _fails_in_one_line(
        command, tmp_path / "run", corrupt, "cannot be read as safetensors or a torch state dict"
    )


def test_predict_with_a_trainable_model_and_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.safetensors"
    command = [
        *("predict", "--model", "Ulsad", "--model.weights", str(missing)),
        *("--data", str(tmp_path / "images"), "--ckpt_path", str(tmp_path / "model.ckpt")),
    ]
    _fails_in_one_line(command, tmp_path / "run", missing, "not found")


def test_only_the_cli_exits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In one process: anomalib's CLI class reports and exits, a model built in Python still raises."""
    from anomalib.cli import AnomalibCLI

    missing = tmp_path / "missing.safetensors"
    with pytest.raises(SystemExit) as exit_info:
        AnomalibCLI(
            ["train", "--model", "Ldknn", "--model.weights", str(missing), *_data(tmp_path)], run=False
        )
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: Backbone weights file not found: {missing}"
    with pytest.raises(WeightsFileNotFoundError, match=f"not found: {missing}"):
        Ldknn(weights=missing)
