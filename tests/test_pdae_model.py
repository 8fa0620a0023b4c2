"""PDAE through anomalib: Engine training, checkpoints, OpenVINO export, registry and configs."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import Callback, seed_everything

from anomalib_pdae.models.pdae import Pdae
from tests.openvino_outputs import run_exported

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "backbones": [("resnet18", ["layer1", "layer2"])],
    "pre_trained": False,
    "image_size": (96, 96),
    "hidden_widths": [32],
    "embedding_dim": 64,
    "beta": 10.0,
}


class _EpochLosses(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.losses.append(float(trainer.callback_metrics["train_loss_epoch"]))


@pytest.fixture(scope="module")
def trained(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """A small PDAE trained for 5 epochs through the Engine on the generated dataset."""
    seed_everything(0)
    datamodule = MVTecAD(
        root=synthetic_root, category="synthetic", train_batch_size=8, eval_batch_size=16, num_workers=0
    )
    model = Pdae(**SMALL, lr_milestones=[4], cutpaste=True, visualizer=False)
    losses = _EpochLosses()
    engine = Engine(
        default_root_dir=tmp_path_factory.mktemp("pdae_run"),
        logger=False,
        accelerator="cpu",
        devices=1,
        max_epochs=5,
        enable_progress_bar=False,
        callbacks=[losses],
    )
    engine.fit(model, datamodule=datamodule)
    return engine, model, datamodule, losses.losses


def test_training_lowers_the_loss_and_defects_score_higher(trained):
    engine, model, datamodule, losses = trained
    assert engine.trainer.current_epoch == 5  # the Engine's max_epochs bounds the run
    assert len(losses) == 5
    assert losses[-1] < 0.2 * losses[0]
    assert all(later < earlier for earlier, later in pairwise(losses))
    predictions = engine.predict(model, dataloaders=datamodule.test_dataloader())
    scores = torch.cat([batch.pred_score for batch in predictions])
    labels = torch.cat([batch.gt_label for batch in predictions]).bool()
    assert labels.sum() == 8
    assert (~labels).sum() == 8
    # Every image with a stroke defect scores above every normal image.
    assert scores[labels].min() > scores[~labels].max()
    results = engine.test(model, datamodule=datamodule, verbose=False)[0]
    assert results["image_AUROC"] >= 0.9


def test_learning_rate_follows_the_multistep_schedule(trained):
    engine, model, _, _ = trained
    optimizer = engine.trainer.optimizers[0]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.8)  # one milestone passed
    assert optimizer.param_groups[0]["weight_decay"] == 1e-5
    trained_ids = {id(p) for p in optimizer.param_groups[0]["params"]}
    assert trained_ids == {id(p) for p in model.model.autoencoder.parameters()}


def test_checkpoint_round_trip(trained, tmp_path: Path):
    engine, model, _, _ = trained
    path = tmp_path / "pdae.ckpt"
    engine.trainer.save_checkpoint(path)
    restored = Pdae.load_from_checkpoint(path, visualizer=False)
    assert restored.hparams["hidden_widths"] == [32]
    assert restored.pre_processor is not None
    images = torch.rand(3, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    model.eval()
    restored.eval()
    with torch.no_grad():
        expected, got = model(images), restored(images)
    torch.testing.assert_close(got.pred_score, expected.pred_score)
    torch.testing.assert_close(got.anomaly_map, expected.anomaly_map)


def test_openvino_export_dynamic_batch_parity(trained, tmp_path: Path):

    _, model, _, _ = trained
    model.eval()
    path = model.to_openvino(export_root=tmp_path, input_size=(96, 96))
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        images = torch.rand(batch, 3, 96, 96, generator=generator)
        with torch.no_grad():
            expected = model(images)
        outputs = run_exported(path, images)
        np.testing.assert_allclose(outputs["pred_score"], expected.pred_score.numpy(), rtol=1e-4)
        np.testing.assert_allclose(
            outputs["anomaly_map"],
            expected.anomaly_map.numpy(),
            rtol=1e-4,
            atol=1e-4 * float(expected.anomaly_map.abs().max()),
        )


def test_get_model_finds_pdae_through_the_plugin():
    from anomalib.models import get_model

    model = get_model("pdae", **SMALL)
    assert type(model) is Pdae
    assert model.model.autoencoder.hidden_widths == [32]


@pytest.mark.parametrize(
    ("config", "expected", "epochs"),
    [
        ("mvtec.yaml", {"score_weight": 0.65, "beta": 100.0, "cutpaste": False}, 250),
        ("loco.yaml", {"score_weight": 0.3, "beta": 10.0, "cutpaste": True}, 160),
    ],
)
def test_cli_configs_parse_to_pdae(config, expected, epochs):
    from anomalib.cli import AnomalibCLI

    cli = AnomalibCLI(
        args=["train", "--config", str(REPO / "configs" / "pdae" / config), "--model.pre_trained", "false"],
        run=False,
    )
    model = cli.model
    assert type(model) is Pdae
    assert {key: model.hparams[key] for key in expected} == expected
    assert cli.config["train"]["trainer"]["max_epochs"] == epochs  # the paper's schedule, in the config
    assert [name for name, _ in model.hparams["backbones"]] == [
        "densenet201.tv_in1k",
        "cait_xxs24_384.fb_dist_in1k",
    ]
    assert model.model.feature_extractor.channels == 960


@pytest.mark.parametrize("limits", [{"max_epochs": 1}, {"max_steps": 2}])
def test_the_trainer_bounds_the_run(limits: dict, synthetic_root: Path, tmp_path: Path) -> None:
    """No schedule is forced through ``trainer_arguments``: the Engine's limits decide."""
    model = Pdae(**SMALL, lr_milestones=[], visualizer=False)
    assert "max_epochs" not in model.trainer_arguments
    datamodule = MVTecAD(
        root=synthetic_root, category="synthetic", train_batch_size=8, eval_batch_size=16, num_workers=0
    )
    engine = Engine(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, **limits)
    engine.fit(model, datamodule=datamodule)
    # 24 training images in batches of 8: one epoch is 3 steps
    assert engine.trainer.global_step == (3 if "max_epochs" in limits else 2)
