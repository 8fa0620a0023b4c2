"""Reb: DefectMaker fine-tuning, LDKNN on the fine-tuned backbone, checkpoints, export (SPEC §4)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.callbacks.checkpoint import ModelCheckpoint
from anomalib.data import MVTecAD
from anomalib.deploy import ExportType
from anomalib.engine import Engine
from lightning.pytorch import Callback

from anomalib_pdae.models.components import Backbone
from anomalib_pdae.models.reb import DefectClassifier, Reb

SIZE = 64
LAYERS = ("blocks.2", "blocks.4")


class LossRecorder(Callback):
    """Keeps the self-supervised loss of every fine-tuning batch."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if outputs:  # batches after the last update return nothing
            self.losses.append(float(outputs["loss"]))


def _datamodule(root: Path) -> MVTecAD:
    return MVTecAD(root=root, category="synthetic", train_batch_size=4, eval_batch_size=8, num_workers=0)


def _reb(weights: Path, tmp: Path, **kwargs) -> Reb:
    args = {
        "backbone": "mobilenetv2_100",
        "layers": LAYERS,
        "weights": weights,
        "k": 3,
        "embedding_dim": 64,
        "num_updates": 3,
        "images_per_update": 28,
        "freeze_updates": 1,
        "saliency": "image",
        "backbone_path": tmp / "backbone.safetensors",
        "pre_processor": Reb.configure_pre_processor((SIZE, SIZE)),
    } | kwargs
    return Reb(**args)


def _engine(tmp: Path, *callbacks: Callback) -> Engine:
    return Engine(
        default_root_dir=tmp / "results",
        logger=False,
        enable_progress_bar=False,
        callbacks=list(callbacks),
    )


@pytest.fixture(scope="module")
def trained(synthetic_root: Path, mobilenet_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One short REB run: 8 updates (6 head-only) of 28 synthetic images, then the LDKNN bank.

    24 training images in batches of 4 give 6 updates in epoch 0, 2 in epoch 1 (its other
    batches are skipped) and the memory bank in epoch 2.
    """
    tmp = tmp_path_factory.mktemp("reb")
    torch.manual_seed(0)
    checkpoints = ModelCheckpoint(
        dirpath=tmp / "ckpt",
        save_top_k=-1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        filename="{epoch}",
    )
    model = _reb(mobilenet_weights, tmp, num_updates=8, freeze_updates=6)
    start = {n: p.detach().clone() for n, p in model.model.classifier.encoder.named_parameters()}
    recorder = LossRecorder()
    engine = _engine(tmp, checkpoints, recorder)
    engine.fit(model, datamodule=_datamodule(synthetic_root))
    final = tmp / "final.ckpt"
    engine.trainer.save_checkpoint(final)
    return {
        "model": model,
        "engine": engine,
        "tmp": tmp,
        "start": start,
        "ckpt": tmp / "ckpt",
        "final": final,
        "losses": np.array(recorder.losses),
    }


def test_arguments_validated(mobilenet_weights: Path, tmp_path: Path) -> None:
    bad_values = (
        {"ssl_loss": "mse"},
        {"saliency": "edn"},
        {"num_updates": -1},
        {"lr": 0.0},
        {"momentum": 1.0},
    )
    for bad in bad_values:
        name = next(iter(bad))
        with pytest.raises(ValueError, match=name):
            _reb(mobilenet_weights, tmp_path, **bad)


def test_classifier_architecture() -> None:
    net = DefectClassifier("resnet18", pre_trained=False)
    linear = [m for m in net.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(512, 512), (512, 256), (256, 7)]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in net.head) == 2
    net.eval()
    images = torch.rand(2, 3, 64, 64)
    normalized = (images - net.mean) / net.std
    pooled = net.encoder.forward_features(normalized).mean(dim=(2, 3))  # resnet: layer4, then GAP
    torch.testing.assert_close(net(images), net.head(pooled))


def test_finetuning_then_bank(trained: dict) -> None:
    model = trained["model"]
    assert int(model.updates) == 8
    assert int(model.batches) == 8  # the 4 batches after the last update are skipped
    assert bool(model._is_fitted)
    assert model.model.ldknn.memory_bank.shape == (24 * 8 * 8, 64)  # 24 images, stride-8 grid of 64 px
    encoder = dict(model.model.classifier.encoder.named_parameters())
    assert any(not torch.equal(encoder[n], p) for n, p in trained["start"].items())


def test_saved_backbone_loads_with_timm_names(trained: dict) -> None:
    model = trained["model"]
    path = trained["tmp"] / "backbone.safetensors"
    assert path.is_file()
    encoder = model.model.classifier.encoder.eval()
    loaded = Backbone("mobilenetv2_100", LAYERS, weights=path)
    images = torch.rand(2, 3, SIZE, SIZE)
    reference = encoder.forward_intermediates(
        (images - loaded.mean) / loaded.std, indices=[2, 3], intermediates_only=True
    )
    for got, expected in zip(loaded(images), reference, strict=True):
        torch.testing.assert_close(got, expected)
    # and the LDKNN inside Reb scores with exactly those weights
    for got, expected in zip(model.model.ldknn.feature_extractor(images), loaded(images), strict=True):
        torch.testing.assert_close(got, expected)


def test_test_metrics(trained: dict, synthetic_root: Path) -> None:
    results = trained["engine"].test(trained["model"], datamodule=_datamodule(synthetic_root))
    assert results[0]["image_AUROC"] > 0.8


def test_checkpoint_round_trip(trained: dict, mobilenet_weights: Path) -> None:
    model = trained["model"].eval()
    loaded = Reb.load_from_checkpoint(trained["final"], weights=mobilenet_weights).eval()
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = model.model(images), loaded.model(images)
    torch.testing.assert_close(got.pred_score, expected.pred_score)
    torch.testing.assert_close(got.anomaly_map, expected.anomaly_map)
    assert int(loaded.updates) == 8


def test_resume_from_checkpoint(
    trained: dict, synthetic_root: Path, mobilenet_weights: Path, tmp_path: Path
) -> None:
    first_epoch = trained["ckpt"] / "epoch=0.ckpt"
    state = torch.load(first_epoch, map_location="cpu", weights_only=False)
    assert int(state["state_dict"]["updates"]) == 6
    assert not bool(state["state_dict"]["_is_fitted"])
    resumed = _reb(mobilenet_weights, tmp_path, num_updates=8)
    engine = _engine(tmp_path)
    engine.fit(resumed, datamodule=_datamodule(synthetic_root), ckpt_path=first_epoch)
    assert int(resumed.updates) == 8
    assert int(resumed.batches) == 8  # 6 before the checkpoint, 2 after it
    assert engine.trainer.lr_scheduler_configs[0].scheduler.last_epoch == 8
    assert bool(resumed._is_fitted)
    # anomalib's default checkpoint is written after validation: it holds the fitted bank
    saved = torch.load(
        Path(engine.trainer.default_root_dir) / "weights" / "lightning" / "model.ckpt",
        map_location="cpu",
        weights_only=False,
    )
    assert bool(saved["state_dict"]["_is_fitted"])
    assert saved["state_dict"]["model.ldknn.memory_bank"].shape == (24 * 8 * 8, 64)


def test_classification_loss_falls(trained: dict) -> None:
    losses = trained["losses"]
    assert len(losses) == 8
    assert abs(losses[:2].mean() - math.log(2)) < 0.15  # sigmoid BCE starts near ln 2
    assert losses[-2:].mean() < losses[:2].mean() - 0.1


def test_openvino_export_parity(trained: dict, tmp_path: Path) -> None:
    openvino = pytest.importorskip("openvino")
    model = trained["model"].eval()
    path = trained["engine"].export(model, ExportType.OPENVINO, export_root=tmp_path)
    compiled = openvino.Core().compile_model(str(path), "CPU")
    for batch in (1, 3):
        images = torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(images).pred_score.numpy()
        outputs = compiled(images.numpy())
        got = next(v for k, v in outputs.items() if "pred_score" in k.get_names())
        np.testing.assert_allclose(got.reshape(-1), expected.reshape(-1), rtol=1e-4, atol=1e-6)
