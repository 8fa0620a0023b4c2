"""ULSAD's local, global and combined maps and image score against the authors' fork (tests/golden)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from golden_features import load_golden, ulsad_branches

from anomalib_pdae.models.ulsad.torch_model import UlsadModel, _scale

GOLDEN = load_golden("ulsad_maps.json")
EXPECTED = GOLDEN["outputs"]
TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}


@pytest.fixture(scope="module")
def model() -> UlsadModel:
    phi, glob, local, local_global = map(torch.from_numpy, ulsad_branches(GOLDEN["input"]["seed"]))
    size = GOLDEN["input"]["image_size"]
    model = UlsadModel("resnet18", pre_trained=False, feature_dim=384, image_size=(size, size)).eval()
    model.branches = lambda images: (phi, glob, local, local_global)
    model.local_quantiles = torch.tensor(GOLDEN["quantiles"]["local"])
    model.global_quantiles = torch.tensor(GOLDEN["quantiles"]["global"])
    return model


def _images() -> torch.Tensor:
    size = GOLDEN["input"]["image_size"]
    return torch.zeros(2, 3, size, size)


def test_combined_map_and_image_score(model: UlsadModel) -> None:
    with torch.no_grad():
        out = model(_images())
    np.testing.assert_allclose(out.pred_score.numpy(), EXPECTED["pred_score"], **TOLERANCE)
    combined = out.anomaly_map[:, 0]
    np.testing.assert_allclose(combined[:, 3::8, 3::8].numpy(), EXPECTED["anomaly_map_combined"], **TOLERANCE)
    mean = combined.mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(mean, EXPECTED["mean"]["anomaly_map_combined"], **TOLERANCE)


@pytest.mark.parametrize(("branch", "quantiles"), [("map_local", "local"), ("map_global", "global")])
def test_local_and_global_maps(model: UlsadModel, branch: str, quantiles: str) -> None:
    with torch.no_grad():
        local, glob = model.raw_maps(_images())
        raw = local if branch == "map_local" else glob
        scaled = model.blur(_scale(raw, torch.tensor(GOLDEN["quantiles"][quantiles])))[:, 0]
    np.testing.assert_allclose(scaled[:, 3::8, 3::8].numpy(), EXPECTED[branch], **TOLERANCE)
    np.testing.assert_allclose(scaled.mean(dim=(1, 2)).numpy(), EXPECTED["mean"][branch], **TOLERANCE)
