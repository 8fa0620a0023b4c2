"""PDAE on real data: KolektorSDD surface cracks, with offline ImageNet weights (CNN-only setup)."""

from __future__ import annotations

from pathlib import Path

from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_pdae.models.pdae import Pdae


def test_kolektorsdd_image_auroc(
    kolektorsdd: Path, mobilenet_weights: Path, efficientnet_weights: Path, tmp_path: Path
):
    seed_everything(0)
    layers = ["blocks.2", "blocks.4"]  # strides 8 and 16
    model = Pdae(
        backbones=[("mobilenetv2_100", layers), ("tf_efficientnet_lite0", layers)],
        weights=[mobilenet_weights, efficientnet_weights],
        image_size=(256, 96),  # keeps the strips' aspect ratio; 32×12 feature grid
        hidden_widths=[64],  # one strided stage + bottleneck: the grid must be a multiple of 4
        lr_milestones=[],
        visualizer=False,
    )
    datamodule = MVTecAD(
        root=kolektorsdd.parent,
        category=kolektorsdd.name,
        train_batch_size=8,
        eval_batch_size=16,
        num_workers=0,
    )
    engine = Engine(
        default_root_dir=tmp_path,
        logger=False,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        max_epochs=2,
        limit_train_batches=16,  # 128 of the 250 training images per epoch: a short CPU budget
        check_val_every_n_epoch=10,  # nothing is selected on validation; skip it
    )
    engine.fit(model, datamodule=datamodule)
    results = engine.test(model, datamodule=datamodule, verbose=False)[0]
    assert results["image_AUROC"] >= 0.75, results
