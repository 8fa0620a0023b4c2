"""Shared fixtures: generated data, and the real data and weights kept beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from anomalib_pdae.data.synthetic import make_synthetic_dataset

# With one pytest-xdist worker per core, each worker computes on its own share of the cores:
# two workers each starting a thread per core would slow both down.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

REPO = Path(__file__).resolve().parents[1]
# Real data and offline weights live outside the repository (never copied in); override the
# location with ANOMALIB_PDAE_SHARED.
SHARED = Path(os.environ.get("ANOMALIB_PDAE_SHARED", REPO.parent / "shared"))


def _shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"shared resource absent: {path}")
    return path


@pytest.fixture(scope="session")
def kolektorsdd() -> Path:
    """The real KolektorSDD dataset in MVTec layout (category folder)."""
    return _shared("data/kolektorsdd")


@pytest.fixture(scope="session")
def mobilenet_weights() -> Path:
    """Real ImageNet weights for timm's ``mobilenetv2_100``."""
    return _shared("weights/mobilenetv2_100.tv_in1k.safetensors")


@pytest.fixture(scope="session")
def efficientnet_weights() -> Path:
    """Real ImageNet weights for timm's ``tf_efficientnet_lite0``."""
    return _shared("weights/tf_efficientnet_lite0.in1k.safetensors")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root folder holding a small generated MVTec-layout category named ``synthetic``."""
    root = tmp_path_factory.mktemp("data")
    make_synthetic_dataset(
        root, category="synthetic", n_train=24, n_test_good=8, n_test_defect=8, image_size=96
    )
    return root
