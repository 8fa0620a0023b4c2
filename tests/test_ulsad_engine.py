"""Ulsad through anomalib's Engine on generated data: training, calibration, checkpoints, export, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.deploy import ExportType
from anomalib.engine import Engine
from lightning.pytorch import Callback, seed_everything

from anomalib_pdae.models.ulsad import Ulsad
from tests.openvino_outputs import run_exported

SIZE = 64
MODEL_ARGS = {"backbone": "resnet18", "pre_trained": False, "feature_dim": 32, "image_size": (SIZE, SIZE)}


class LossRecorder(Callback):
    """Keeps the loss of every training batch."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def _datamodule(root: Path, **kwargs) -> MVTecAD:
    loader_args = {"train_batch_size": 8, "eval_batch_size": 8, "num_workers": 0}
    return MVTecAD(root=root, category="synthetic", seed=0, **loader_args, **kwargs)


def _engine(tmp: Path, *callbacks: Callback, **kwargs) -> Engine:
    return Engine(
        default_root_dir=tmp, logger=False, enable_progress_bar=False, callbacks=list(callbacks), **kwargs
    )


def _record_calibration(model: Ulsad) -> list[int]:
    """Make the model's calibration report how many images each call saw."""
    counts: list[int] = []
    calibrate = model.model.calibrate

    def recording(batches):
        batches = list(batches)
        counts.append(sum(len(b) for b in batches))
        calibrate(batches)

    model.model.calibrate = recording
    return counts


@pytest.fixture(scope="module")
def trained(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Eight epochs on 22 of the 24 generated training images (anomalib's default split)."""
    tmp = tmp_path_factory.mktemp("ulsad")
    seed_everything(0)
    model = Ulsad(**MODEL_ARGS, lr=1e-3)
    calibrations = _record_calibration(model)
    recorder = LossRecorder()
    engine = _engine(tmp, recorder, max_epochs=8)
    datamodule = _datamodule(synthetic_root)
    engine.fit(model, datamodule=datamodule)
    final = tmp / "final.ckpt"
    engine.trainer.save_checkpoint(final)
    return {
        "model": model,
        "engine": engine,
        "datamodule": datamodule,
        "losses": recorder.losses,
        "calibrations": calibrations,
        "final": final,
    }


def test_loss_falls(trained: dict) -> None:
    losses = np.array(trained["losses"])
    assert len(losses) == 8 * 3  # 22 images in batches of 8, 6
    assert losses[-3:].mean() < 0.6 * losses[:3].mean()


def test_defects_score_higher_than_normal_images(trained: dict, synthetic_root: Path) -> None:
    results = trained["engine"].test(trained["model"], datamodule=_datamodule(synthetic_root), verbose=False)
    assert results[0]["image_AUROC"] >= 0.9


def test_quantiles_come_from_held_out_training_images(trained: dict, synthetic_root: Path) -> None:
    """MVTecAD validates on its test images by default, so training images are held out instead."""
    model, datamodule = trained["model"], trained["datamodule"]
    held_out = model._holdout
    assert held_out is datamodule.ulsad_holdout
    assert len(held_out) == 2
    assert len(datamodule.train_data) == 22
    train_folder = synthetic_root / "synthetic" / "train" / "good"
    assert all(Path(p).parent == train_folder for p in held_out.samples.image_path)
    assert not set(held_out.samples.image_path) & set(datamodule.train_data.samples.image_path)
    # once per validation (every epoch: the weights changed), each time on the 2 held-out images
    assert trained["calibrations"] == [2] * 8
    assert not torch.equal(model.model.local_quantiles, torch.tensor([0.0, 0.1]))
    assert bool(model.model.features.fitted)


def test_held_out_images_are_split_off_once_per_datamodule(trained: dict, tmp_path: Path) -> None:
    datamodule = trained["datamodule"]
    held_out = datamodule.ulsad_holdout
    model = Ulsad(**MODEL_ARGS)
    _engine(tmp_path, max_epochs=1, limit_train_batches=1).fit(model, datamodule=datamodule)
    assert model._holdout is held_out
    assert len(datamodule.train_data) == 22


def test_quantiles_from_normal_validation_images(synthetic_root: Path, tmp_path: Path) -> None:
    """With a validation split taken from the training images, those (all normal) are used."""
    seed_everything(0)
    model = Ulsad(**MODEL_ARGS)
    calibrations = _record_calibration(model)
    datamodule = _datamodule(synthetic_root, val_split_mode="from_train", val_split_ratio=0.25)
    _engine(tmp_path, max_epochs=1).fit(model, datamodule=datamodule)
    assert model._holdout is None
    assert len(datamodule.train_data) == 18
    assert calibrations == [6]
    images = torch.stack([item.image for item in datamodule.val_data])
    expected = Ulsad(**MODEL_ARGS)
    expected.load_state_dict(model.state_dict())
    expected.model.calibrate([model.pre_processor.transform(images)])
    torch.testing.assert_close(model.model.local_quantiles, expected.model.local_quantiles)
    torch.testing.assert_close(model.model.global_quantiles, expected.model.global_quantiles)


def test_checkpoint_round_trip(trained: dict) -> None:
    model = trained["model"].eval()
    loaded = Ulsad.load_from_checkpoint(trained["final"]).eval()
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = model.model(images), loaded.model(images)
    torch.testing.assert_close(got.pred_score, expected.pred_score)
    torch.testing.assert_close(got.anomaly_map, expected.anomaly_map)
    torch.testing.assert_close(loaded.model.features.std, model.model.features.std)
    assert bool(loaded.model.features.fitted)


def test_openvino_export_parity(trained: dict, tmp_path: Path) -> None:
    model = trained["model"].eval()
    path = trained["engine"].export(model, ExportType.OPENVINO, export_root=tmp_path)
    for batch in (1, 3):
        images = torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(images)
        outputs = run_exported(path, images)
        for name in ("pred_score", "anomaly_map"):
            got = outputs[name]
            want = getattr(expected, name).numpy()
            np.testing.assert_allclose(got.reshape(-1), want.reshape(-1), rtol=1e-4, atol=1e-6)


def test_anomalib_cli_trains_ulsad(synthetic_root: Path, tmp_path: Path) -> None:
    command = [
        *(str(Path(sys.executable).with_name("anomalib")), "train", "--model", "Ulsad"),
        *("--model.backbone", "resnet18", "--model.pre_trained", "false", "--model.feature_dim", "16"),
        *("--model.image_size", f"[{SIZE}, {SIZE}]"),
        *("--data", "MVTecAD", "--data.root", str(synthetic_root), "--data.category", "synthetic"),
        *("--data.num_workers", "0", "--data.train_batch_size", "8", "--data.eval_batch_size", "8"),
        *("--trainer.max_epochs", "1", "--trainer.logger", "false", "--default_root_dir", str(tmp_path)),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.rglob("model.ckpt"))
