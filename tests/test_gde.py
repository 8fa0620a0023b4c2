"""GDE: the Gaussian of pooled last-layer features, its anomalib workflow and its registration."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.data.utils import read_image
from anomalib.engine import Engine
from anomalib.models import AnomalibModule, get_model
from lightning.pytorch import seed_everything

import anomalib_pdae
from anomalib_pdae import Gde
from anomalib_pdae.models.gde import GdeModel
from anomalib_pdae.models.gde.torch_model import image_embedding
from benchmarks.build import build_model

REPO = Path(__file__).resolve().parents[1]
SIZE = 64


def test_gde_scores_are_mahalanobis_to_the_ledoit_wolf_gaussian() -> None:
    torch.manual_seed(0)
    model = GdeModel("resnet18", "layer4", pre_trained=False)
    train = torch.rand(8, 3, 32, 32)
    embeddings = model.embed(train)
    # The embedding: the last layer, average-pooled, unit length.
    pooled = model.backbone(train)[0].mean(dim=(2, 3))
    assert torch.allclose(embeddings, pooled / pooled.norm(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(image_embedding(model.backbone(train)[0]), embeddings)
    model.fit(embeddings)
    test = torch.rand(3, 3, 32, 32)
    scores = model.eval()(test).pred_score
    # Reference: Ledoit-Wolf shrinkage written out (Ledoit & Wolf 2004), inverted with numpy.
    x = embeddings.double().numpy()
    n, p = x.shape
    centred = x - x.mean(0)
    sample = centred.T @ centred / n
    mu = np.trace(sample) / p
    delta = ((sample - mu * np.eye(p)) ** 2).sum() / p
    beta = sum(((np.outer(row, row) - sample) ** 2).sum() for row in centred) / (n * n * p)
    shrinkage = min(beta, delta) / delta
    covariance = (1 - shrinkage) * sample + shrinkage * mu * np.eye(p)
    precision = np.linalg.inv(covariance)
    for score, vector in zip(scores, model.embed(test).double().numpy(), strict=True):
        d = vector - x.mean(0)
        assert score.item() == pytest.approx(math.sqrt(d @ precision @ d), rel=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        model.fit(embeddings[:1])


@pytest.fixture(scope="module")
def trained(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("gde")
    seed_everything(0)
    model = Gde(
        "resnet18", "layer4", pre_trained=False, pre_processor=Gde.configure_pre_processor((SIZE, SIZE))
    )
    datamodule = MVTecAD(
        root=synthetic_root, category="synthetic", train_batch_size=8, eval_batch_size=8, num_workers=0
    )
    engine = Engine(default_root_dir=tmp, logger=False, enable_progress_bar=False)
    engine.fit(model, datamodule=datamodule)
    checkpoint = tmp / "final.ckpt"
    engine.trainer.save_checkpoint(checkpoint)
    return {"model": model.eval(), "engine": engine, "datamodule": datamodule, "checkpoint": checkpoint}


def test_engine_fits_one_gaussian_and_tests_image_metrics_only(trained: dict) -> None:
    model = trained["model"]
    assert model.model.mean.shape == (512,) and model.model.precision.shape == (512, 512)
    assert not model.embeddings  # handed to the fit, not kept
    results = trained["engine"].test(model, datamodule=trained["datamodule"], verbose=False)[0]
    assert 0 <= results["image_AUROC"] <= 1
    assert "pixel_AUROC" not in results  # no anomaly map


def test_checkpoint_round_trip_gives_identical_scores(trained: dict, synthetic_root: Path) -> None:
    folder = synthetic_root / "synthetic" / "test"
    paths = [folder / "good" / "000.png", folder / "defect" / "000.png", folder / "defect" / "001.png"]
    images = torch.stack([read_image(path, as_tensor=True) for path in paths])
    loaded = Gde.load_from_checkpoint(trained["checkpoint"]).eval()
    with torch.no_grad():
        expected, got = trained["model"](images), loaded(images)
    assert len(set(expected.pred_score.tolist())) == 3
    torch.testing.assert_close(got.pred_score, expected.pred_score, rtol=0, atol=0)
    assert got.anomaly_map is None


def test_unfitted_gde_says_so(tmp_path: Path) -> None:
    model = Gde("resnet18", "layer4", pre_trained=False)
    with pytest.raises(RuntimeError, match="GDE is not fitted"):
        model.model.eval()(torch.rand(1, 3, SIZE, SIZE))
    with pytest.raises(RuntimeError, match="GDE is not fitted"):
        model.to_torch(tmp_path)
    assert not any(tmp_path.iterdir())


def test_gde_is_registered_like_the_other_models() -> None:
    assert AnomalibModule in Gde.__bases__  # anomalib's get_model sees direct subclasses only
    assert type(get_model("gde", pre_trained=False)) is Gde
    assert anomalib_pdae.Gde is Gde
    group = (REPO / "pyproject.toml").read_text().split('[project.entry-points."anomalib.models"]')[1]
    declared = dict(re.findall(r'^(\w+) = "([\w.:]+)"$', group.split("\n[")[0], flags=re.MULTILINE))
    assert declared["Gde"] == "anomalib_pdae.models.gde:Gde"
    assert set(declared) == set(anomalib_pdae.__all__) - {"__version__"}
    assert (REPO / "anomalib_pdae" / "models" / "gde" / "README.md").is_file()


def test_benchmarks_build_the_package_gde() -> None:
    """A Table 5 job's Gde: raw scores (no post-processing, no evaluator), the spec's input size."""
    init_args = {
        "backbone": "resnet18",
        "layer": "layer4",
        "layers": ["layer2", "layer3"],
        "pre_trained": False,
    }
    model = build_model({"model": "Gde", "init_args": init_args, "image_size": 32})
    assert type(model) is Gde
    assert model.post_processor is None and model.evaluator is None
    assert model.pre_processor.transform.size == [32, 32]
