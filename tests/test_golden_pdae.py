"""PDAE's P_k distances, s_cp, s_cd, image score and map against the authors' code (tests/golden)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from golden_features import load_golden, pdae_features_and_reconstruction
from torch import nn

from anomalib_pdae.models.pdae.torch_model import (
    PdaeModel,
    cross_dimension_score,
    cross_patch_score,
    patch_distances,
)

GOLDEN = load_golden("pdae_scores.json")
EXPECTED = GOLDEN["outputs"]


@pytest.fixture(scope="module")
def distances() -> torch.Tensor:
    features, reconstruction = map(
        torch.from_numpy, pdae_features_and_reconstruction(GOLDEN["input"]["seed"])
    )
    return patch_distances(features, reconstruction, GOLDEN["patch_size"], GOLDEN["embedding_dim"])


def test_patch_distances(distances: torch.Tensor) -> None:
    for key, vector in EXPECTED["distances"].items():
        image, y, x = map(int, key.split(","))
        np.testing.assert_allclose(distances[image, :, y, x].numpy(), vector, rtol=1e-4, atol=1e-6)


def test_patch_map(distances: torch.Tensor) -> None:
    patch_map = distances.mean(dim=1).numpy()
    np.testing.assert_allclose(patch_map, EXPECTED["patch_map"], rtol=1e-5, atol=1e-7)


def test_cross_patch_cross_dimension_and_image_score(distances: torch.Tensor) -> None:
    s_cp, s_cd = cross_patch_score(distances), cross_dimension_score(distances)
    weight = GOLDEN["score_weight"]
    np.testing.assert_allclose(s_cp.numpy(), EXPECTED["s_cp"], rtol=1e-5)
    np.testing.assert_allclose(s_cd.numpy(), EXPECTED["s_cd"], rtol=1e-5)
    np.testing.assert_allclose((weight * s_cp + (1 - weight) * s_cd).numpy(), EXPECTED["score"], rtol=1e-5)


class _Fixed(nn.Module):
    """Stands in for the backbones or the auto-encoder: returns the golden input."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output

    def forward(self, *_: torch.Tensor) -> torch.Tensor:
        return self.output


def test_model_forward_gives_the_authors_score_and_map() -> None:
    features, reconstruction = map(
        torch.from_numpy, pdae_features_and_reconstruction(GOLDEN["input"]["seed"])
    )
    model = PdaeModel([("resnet18", ["layer1", "layer2"])], image_size=(64, 64), pre_trained=False)
    model.feature_extractor, model.autoencoder = _Fixed(features), _Fixed(reconstruction)
    size = GOLDEN["map_size"]
    out = model.eval()(torch.zeros(2, 3, size, size))
    np.testing.assert_allclose(out.pred_score.numpy(), EXPECTED["score"], rtol=1e-5)
    np.testing.assert_allclose(out.anomaly_map[:, 0].numpy(), EXPECTED["anomaly_map"], rtol=1e-5, atol=1e-7)
