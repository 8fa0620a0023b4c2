"""Where backbone weights come from: a local file, the local hub cache, or a clear offline error."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from anomalib_pdae.models.components import Backbone, WeightsError

# Bounds a hung download; generous because importing torch and anomalib on a loaded machine is slow.
TIME_BOUND_S = 600


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _offline_env(hf_home: Path, **extra: str) -> dict[str, str]:
    """A hub endpoint nothing listens on and an empty (or given) cache: a machine with no network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return env | {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HOME": str(hf_home)} | extra


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIME_BOUND_S,
        check=False,
    )


ALL_MODELS = """
from anomalib_pdae import Ldknn, Pdae, Reb, Ulsad
from anomalib_pdae.models.components import WeightsError
for model in (Ldknn, Pdae, Reb, Ulsad):
    try:
        model(pre_trained=True)
    except WeightsError as error:
        print(model.__name__, "|", error)
    else:
        print(model.__name__, "| built")
"""


def test_every_model_fails_at_once_and_says_how_to_proceed_offline(tmp_path: Path) -> None:
    """The storm this replaces printed "Retrying in Ns" lines for a minute per backbone file."""
    result = _python(ALL_MODELS, _offline_env(tmp_path / "hf"))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["Ldknn", "Pdae", "Reb", "Ulsad"]
    for line in lines:
        message = line.split(" | ")[1]
        assert "No pretrained weights for backbone" in message, line
        assert "weights tag" in message and "weights=PATH" in message and "pre_trained=False" in message
    assert "Retrying" not in result.stderr and "LocalEntryNotFoundError" not in result.stderr


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """In this process: a hub endpoint nothing listens on and an empty hub cache (returned)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "hub"


@pytest.mark.parametrize("offline_flag", [False, True], ids=["unreachable-hub", "HF_HUB_OFFLINE"])
def test_error_names_backbone_tag_and_remedies(
    no_hub: Path, monkeypatch: pytest.MonkeyPatch, offline_flag: bool
) -> None:
    if offline_flag:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as error:
        Backbone("resnet18.tv_in1k", ["layer2"])
    message = str(error.value)
    assert "'resnet18.tv_in1k'" in message and "weights tag 'tv_in1k'" in message
    assert "timm/resnet18.tv_in1k" in message and "weights=PATH" in message and "pre_trained=False" in message


def _hub_cache(cache: Path, repo: str, weights: Path) -> None:
    """The hub cache layout huggingface_hub reads: refs/main -> a snapshot holding the file."""
    revision = "0" * 40
    folder = cache / f"models--timm--{repo}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    (folder / "snapshots" / revision).mkdir(parents=True)
    (folder / "snapshots" / revision / "model.safetensors").symlink_to(weights)


@pytest.mark.parametrize("offline_flag", [False, True], ids=["unreachable-hub", "HF_HUB_OFFLINE"])
def test_cached_weights_load_without_the_hub_and_say_so(
    no_hub: Path,
    mobilenet_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    offline_flag: bool,
) -> None:
    from safetensors.torch import load_file

    if offline_flag:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _hub_cache(no_hub, "mobilenetv2_100.ra_in1k", mobilenet_weights)
    with caplog.at_level(logging.INFO, logger="anomalib_pdae"):
        backbone = Backbone("mobilenetv2_100", ["blocks.2"])
    ours = [record.getMessage() for record in caplog.records if record.name.startswith("anomalib_pdae")]
    assert len(ours) == 1 and ours[0].startswith("weights: mobilenetv2_100 from ")
    assert ours[0].endswith("model.safetensors")
    assert backbone.model.conv_stem.weight.equal(load_file(mobilenet_weights)["conv_stem.weight"])


def test_local_file_loads_the_real_weights(mobilenet_weights: Path) -> None:
    from safetensors.torch import load_file

    backbone = Backbone("mobilenetv2_100", ["blocks.2"], weights=mobilenet_weights)
    expected = load_file(mobilenet_weights)["conv_stem.weight"]
    assert backbone.model.conv_stem.weight.equal(expected)


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=f"weights file not found: {missing}"):
        Backbone("mobilenetv2_100", ["blocks.2"], weights=missing)


def test_corrupt_file_is_named(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00not a weights file" * 10)
    with pytest.raises(WeightsError, match=f"{corrupt} cannot be read as safetensors or a torch state dict"):
        Backbone("mobilenetv2_100", ["blocks.2"], weights=corrupt)


def test_file_for_another_architecture_is_named(efficientnet_weights: Path) -> None:
    with pytest.raises(WeightsError, match=f"{efficientnet_weights} does not fit backbone 'mobilenetv2_100'"):
        Backbone("mobilenetv2_100", ["blocks.2"], weights=efficientnet_weights)
