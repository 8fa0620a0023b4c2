"""Reb: DefectMaker fine-tuning, LDKNN on the fine-tuned backbone, checkpoints, export (SPEC §4)."""

from __future__ import annotations

import inspect
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
from PIL import Image
from safetensors.torch import load_file

from anomalib_pdae.models.components import Backbone
from anomalib_pdae.models.ldknn import Ldknn
from anomalib_pdae.models.reb import DefectClassifier, Reb
from tests.openvino_outputs import run_exported

SIZE = 64
LAYERS = ("blocks.2", "blocks.4")
LR, MIN_LR, RESTART = 0.03, 1e-5, 4
PROGRESS = {"update", "ssl_loss", "ssl_accuracy", "lr"}


class FinetuneRecorder(Callback):
    """Keeps, for every fine-tuning batch, the counters and learning rate it starts with."""

    def __init__(self) -> None:
        self.starts: list[tuple[int, int, float]] = []  # (updates, batches, lr)
        self.progress: set[str] = set()
        self.momentum: dict[int, torch.Tensor] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        state = trainer.optimizers[0].state_dict()["state"]
        self.momentum = {key: value["momentum_buffer"].clone() for key, value in state.items()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not pl_module.finetuned:
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            self.starts.append((int(pl_module.updates), int(pl_module.batches), lr))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if outputs:  # batches after the last update return nothing
            self.progress |= set(trainer.progress_bar_metrics)


def _scheduled_lr(update: int) -> float:
    """SGD learning rate during update ``update`` (0-based): cosine with warm restarts."""
    return MIN_LR + (LR - MIN_LR) * (1 + math.cos(math.pi * (update % RESTART) / RESTART)) / 2


def _datamodule(root: Path) -> MVTecAD:
    # batches of 2 images = 14 synthetic images: two batches are accumulated per update
    return MVTecAD(root=root, category="synthetic", train_batch_size=2, eval_batch_size=8, num_workers=0)


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
        "restart_period": RESTART,
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

    24 training images in batches of 2 (14 synthetic images each, so two batches per update)
    give 6 updates in epoch 0, 2 in epoch 1 (its other 8 batches are skipped) and the memory
    bank in epoch 2. The cosine schedule restarts every 4 updates.
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
    start_head = model.model.classifier.head[0].weight.detach().clone()
    recorder = FinetuneRecorder()
    engine = _engine(tmp, checkpoints, recorder)
    engine.fit(model, datamodule=_datamodule(synthetic_root))
    final = tmp / "final.ckpt"
    engine.trainer.save_checkpoint(final)
    return {
        "model": model,
        "engine": engine,
        "tmp": tmp,
        "start": start,
        "start_head": start_head,
        "ckpt": tmp / "ckpt",
        "final": final,
        "recorder": recorder,
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


def test_defaults_follow_the_spec() -> None:
    defaults = {name: p.default for name, p in inspect.signature(Reb).parameters.items()}
    spec = {
        "backbone": "resnet18.tv_in1k",  # torchvision's ImageNet weights, as REB's code loads
        "layers": ("layer2", "layer3"),
        "k": 5,
        "ld_coefficient": 1.0,
        "coreset_ratio": 1.0,
        "embedding_dim": None,  # REB's length for the backbone: 512 for ResNet-18
        "num_updates": 300,
        "images_per_update": 1000,
        "freeze_updates": 40,
        "lr": 0.03,
        "momentum": 0.9,
        "weight_decay": 3e-5,
        "restart_period": 330,
        "min_lr": 1e-5,
        "ssl_loss": "bce",
        "soften_prob": 0.5,
        "jitter": 0.1,
    }
    assert {name: defaults[name] for name in spec} == spec


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
    assert int(model.batches) == 16  # the 8 batches after the last update are skipped
    assert bool(model._is_fitted)
    assert model.model.ldknn.memory_bank.shape == (24 * 8 * 8, 64)  # 24 images, stride-8 grid of 64 px
    encoder = dict(model.model.classifier.encoder.named_parameters())
    assert any(not torch.equal(encoder[n], p) for n, p in trained["start"].items())


def test_accumulation_and_schedule(trained: dict) -> None:
    starts = trained["recorder"].starts
    assert [(u, b) for u, b, _ in starts] == [(i // 2, i) for i in range(16)]  # 2 batches per update
    lrs = [lr for _, _, lr in starts]
    assert lrs == pytest.approx([_scheduled_lr(i // 2) for i in range(16)], rel=1e-9)
    assert lrs[8] == pytest.approx(LR) and lrs[6] < LR / 2  # warm restart after 4 updates
    state = torch.load(trained["ckpt"] / "epoch=0.ckpt", map_location="cpu", weights_only=False)
    group = state["optimizer_states"][0]["param_groups"][0]
    assert (group["momentum"], group["weight_decay"]) == (0.9, 3e-5)
    assert trained["recorder"].progress >= PROGRESS


def test_backbone_frozen_for_first_updates(trained: dict, mobilenet_weights: Path) -> None:
    state = torch.load(trained["ckpt"] / "epoch=0.ckpt", map_location="cpu", weights_only=False)
    assert int(state["state_dict"]["updates"]) == 6  # = freeze_updates: only the head has learned
    imagenet = load_file(mobilenet_weights)
    prefix = "model.classifier.encoder."
    encoder = {k.removeprefix(prefix): v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    running = [k for k in encoder if k.endswith("running_mean")]
    assert running and all(k in imagenet for k in running)  # batch-norm statistics compared too
    for name, value in encoder.items():
        if name in imagenet:
            torch.testing.assert_close(value, imagenet[name], rtol=0, atol=0)
    head = state["state_dict"]["model.classifier.head.0.weight"]
    assert not torch.equal(head, trained["start_head"])
    # after the 2 unfrozen updates the encoder's weights and batch-norm statistics have moved
    final = trained["model"].model.classifier.encoder.state_dict()
    assert not torch.equal(final[running[0]], imagenet[running[0]])


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
    # and the LDKNN inside Reb scores with exactly those weights, as does a plain Ldknn
    standalone = Ldknn(backbone="mobilenetv2_100", layers=LAYERS, weights=path).model.feature_extractor
    for extractor in (model.model.ldknn.feature_extractor, standalone):
        for got, expected in zip(extractor(images), loaded(images), strict=True):
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


def test_resume_continues_the_schedule(
    trained: dict, synthetic_root: Path, mobilenet_weights: Path, tmp_path: Path
) -> None:
    """Resuming from the epoch-0 checkpoint runs only the 2 missing updates, on the same schedule."""
    first_epoch = trained["ckpt"] / "epoch=0.ckpt"
    state = torch.load(first_epoch, map_location="cpu", weights_only=False)
    assert int(state["state_dict"]["updates"]) == 6
    assert not bool(state["state_dict"]["_is_fitted"])
    resumed = _reb(mobilenet_weights, tmp_path, num_updates=8)
    recorder = FinetuneRecorder()
    engine = _engine(tmp_path, recorder)
    engine.fit(resumed, datamodule=_datamodule(synthetic_root), ckpt_path=first_epoch)
    # a fresh start would run 16 fine-tuning batches from update 0 at the full learning rate
    assert [(u, b) for u, b, _ in recorder.starts] == [(6, 12), (6, 13), (7, 14), (7, 15)]
    assert [lr for _, _, lr in recorder.starts] == pytest.approx(
        [_scheduled_lr(6)] * 2 + [_scheduled_lr(7)] * 2
    )
    assert recorder.starts == trained["recorder"].starts[12:]  # as in the uninterrupted run
    saved_momentum = state["optimizer_states"][0]["state"]
    assert recorder.momentum.keys() == saved_momentum.keys() and saved_momentum
    for key, buffer in saved_momentum.items():
        torch.testing.assert_close(recorder.momentum[key], buffer["momentum_buffer"], rtol=0, atol=0)
    assert int(resumed.updates) == 8
    assert int(resumed.batches) == 16  # 12 before the checkpoint, 4 after it
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


def test_no_updates_is_ldknn_on_the_given_weights(
    synthetic_root: Path, mobilenet_weights: Path, tmp_path: Path
) -> None:
    """``num_updates=0``: no fine-tuning, no weights file; scores equal Ldknn's on the same weights."""
    reb = _reb(mobilenet_weights, tmp_path, num_updates=0)
    classifier_start = {k: v.clone() for k, v in reb.model.classifier.state_dict().items()}
    recorder = FinetuneRecorder()
    _engine(tmp_path / "reb", recorder).fit(reb, datamodule=_datamodule(synthetic_root))
    assert recorder.starts == []
    assert (int(reb.updates), int(reb.batches), bool(reb._is_fitted)) == (0, 0, True)
    assert not (tmp_path / "backbone.safetensors").exists()
    for key, value in reb.model.classifier.state_dict().items():
        assert torch.equal(value, classifier_start[key]), key
    ldknn = Ldknn(
        backbone="mobilenetv2_100",
        layers=LAYERS,
        weights=mobilenet_weights,
        k=3,
        embedding_dim=64,
        pre_processor=Ldknn.configure_pre_processor((SIZE, SIZE)),
    )
    _engine(tmp_path / "ldknn").fit(ldknn, datamodule=_datamodule(synthetic_root))
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = ldknn.model.eval()(images), reb.model.eval()(images)
    torch.testing.assert_close(got.pred_score, expected.pred_score)
    torch.testing.assert_close(got.anomaly_map, expected.anomaly_map)


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
            assert got.size == want.size
            np.testing.assert_allclose(got.reshape(-1), want.reshape(-1), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("defects", "classes"), [("cutpaste", 3), ("draem", 2)])
def test_table5_defects_finetune_their_own_task(
    defects: str, classes: int, synthetic_root: Path, mobilenet_weights: Path, tmp_path: Path
) -> None:
    """CutPaste's 3-way and DRAEM's 2-way tasks fine-tune the backbone like DefectMaker's 7-way."""
    textures = None
    if defects == "draem":
        textures = tmp_path / "textures"
        textures.mkdir()
        for index in range(3):
            noise = np.random.default_rng(index).integers(0, 256, (80, 90, 3), dtype=np.uint8)
            Image.fromarray(noise).save(textures / f"{index}.png")
    model = _reb(mobilenet_weights, tmp_path, defects=defects, texture_dir=textures, num_updates=2)
    assert model.model.classifier.head[-1].out_features == classes
    assert model.maker.num_classes == classes
    start = {n: p.detach().clone() for n, p in model.model.classifier.encoder.named_parameters()}
    recorder = FinetuneRecorder()
    engine = _engine(tmp_path, recorder)
    engine.fit(model, datamodule=_datamodule(synthetic_root))
    # batches of 2 images give 2·classes synthetic images; 28 per update
    assert len(recorder.starts) == 2 * -(-28 // (2 * classes))
    assert (int(model.updates), bool(model._is_fitted)) == (2, True)
    encoder = dict(model.model.classifier.encoder.named_parameters())
    assert any(not torch.equal(encoder[n], p) for n, p in start.items())
    assert (tmp_path / "backbone.safetensors").is_file()
    checkpoint = tmp_path / "final.ckpt"
    engine.trainer.save_checkpoint(checkpoint)
    loaded = Reb.load_from_checkpoint(checkpoint, weights=mobilenet_weights)
    assert loaded.model.classifier.head[-1].out_features == classes


def test_table5_defects_arguments(mobilenet_weights: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="defects must be one of"):
        _reb(mobilenet_weights, tmp_path, defects="perlin")
    with pytest.raises(ValueError, match="texture_dir"):
        _reb(mobilenet_weights, tmp_path, defects="cutpaste", texture_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="Texture folder"):
        _reb(mobilenet_weights, tmp_path, defects="draem", texture_dir=tmp_path / "missing")


@pytest.mark.parametrize(
    ("limits", "updates"),
    [
        ({"max_epochs": 1}, 0),  # the only epoch is the bank pass
        ({"max_epochs": 2}, 6),  # 12 batches of 2 images = 6 updates, then the bank epoch
        ({"max_steps": 4}, 3),  # 3 updates and the bank pass, which counts as a step
    ],
)
def test_trainer_limits_cap_finetuning_and_the_bank_is_still_built(
    limits: dict,
    updates: int,
    synthetic_root: Path,
    mobilenet_weights: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = _reb(mobilenet_weights, tmp_path, num_updates=300)
    engine = Engine(default_root_dir=tmp_path / "results", logger=False, enable_progress_bar=False, **limits)
    with caplog.at_level("WARNING", logger="anomalib_pdae"):
        engine.fit(model, datamodule=_datamodule(synthetic_root))
    capped = [r.getMessage() for r in caplog.records if "end fine-tuning after" in r.getMessage()]
    assert capped == [
        f"Reb: the trainer's limits (max_epochs={engine.trainer.max_epochs}, max_steps="
        f"{engine.trainer.max_steps}) end fine-tuning after {updates} of 300 updates; the memory bank is "
        "built on the backbone as it stands. Run REB's full schedule with max_epochs=-1 "
        "(configs/reb/mvtec.yaml)."
    ]
    assert (int(model.updates), bool(model._is_fitted)) == (updates, True)
    assert (tmp_path / "backbone.safetensors").is_file() == (updates > 0)
    checkpoint = Path(engine.trainer.default_root_dir) / "weights" / "lightning" / "model.ckpt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert bool(saved["state_dict"]["_is_fitted"])  # anomalib's checkpoint holds the bank
    assert saved["state_dict"]["model.ldknn.memory_bank"].shape == (24 * 8 * 8, 64)
    results = engine.test(model, datamodule=_datamodule(synthetic_root), verbose=False)
    assert 0 <= results[0]["image_AUROC"] <= 1
