"""The demo on a machine without a network: a short, readable output, panels, and clear bad input."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from anomalib_pdae.demo import main

MAX_LINES = 40  # the budget for everything printed after the install


def _offline_env(tmp_path: Path) -> dict[str, str]:
    with socket.socket() as sock:  # a port nothing listens on: the hub cannot be reached
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ANOMALIB_PDAE_VERBOSE"))}
    return env | {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")}


def test_demo_offline_is_short_and_draws_panels(synthetic_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    arguments = ["--data", str(synthetic_root / "synthetic"), "--output", str(output), "--image-size", "64"]
    arguments += ["--readme-panel", str(tmp_path / "panel.png")]
    result = subprocess.run(
        [sys.executable, "-m", "anomalib_pdae.demo", *arguments],
        capture_output=True,
        text=True,
        env=_offline_env(tmp_path),
        cwd=tmp_path,
        timeout=1800,  # bounds a hang (e.g. a retry storm) on a loaded machine; not a speed assertion
        check=False,
    )
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed[-3000:]
    assert "Traceback" not in printed and "Retrying" not in printed and "Warning" not in printed, printed
    lines = printed.splitlines()
    assert len(lines) <= MAX_LINES, f"{len(lines)} lines:\n{printed}"
    said = ("weights: mobilenetv2_100", "weights: NONE REACHABLE")
    assert any(line.startswith(said) for line in lines), printed
    assert "image_AUROC" in printed  # the metrics table
    test_images = sorted((synthetic_root / "synthetic" / "test").rglob("*.png"))
    assert len(sorted((output / "panels").rglob("*.png"))) == len(test_images)
    assert (tmp_path / "panel.png").stat().st_size < 500_000
    assert sorted(output.rglob("model.xml"))


@pytest.mark.parametrize("problem", ["missing", "corrupt", "other architecture"])
def test_bad_weights_file_one_line_nothing_written(
    problem: str, tmp_path: Path, efficientnet_weights: Path, capsys: pytest.CaptureFixture
) -> None:
    weights = {
        "missing": tmp_path / "missing.safetensors",
        "corrupt": tmp_path / "corrupt.safetensors",
        "other architecture": efficientnet_weights,
    }[problem]
    if problem == "corrupt":
        weights.write_bytes(b"this is not a weights file")
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(["--weights", str(weights), "--output", str(output)])
    message = str(exit_.value.code)
    assert message.startswith("error: ") and str(weights) in message and "\n" not in message
    assert not output.exists()
