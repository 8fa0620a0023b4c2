"""LDKNN on real defects: KolektorSDD with real ImageNet weights (MobileNetV2)."""

import pytest
from anomalib.data import MVTecAD
from anomalib.engine import Engine

from anomalib_pdae import Ldknn


@pytest.mark.realdata
def test_ldknn_detects_kolektorsdd_cracks(kolektorsdd, mobilenet_weights, tmp_path):
    datamodule = MVTecAD(
        root=kolektorsdd.parent,
        category=kolektorsdd.name,
        train_batch_size=32,
        eval_batch_size=32,
        num_workers=0,
        seed=0,
    )
    model = Ldknn(
        backbone="mobilenetv2_100",
        layers=["blocks.2", "blocks.4"],
        weights=mobilenet_weights,
        # REB defaults (K=5, gamma=1, whole bank); a 128 px input keeps the CPU test short.
        pre_processor=Ldknn.configure_pre_processor(image_size=(128, 128)),
        visualizer=False,
    )
    engine = Engine(default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    engine.fit(model, datamodule=datamodule)
    (results,) = engine.test(model, datamodule=datamodule, verbose=False)
    assert results["image_AUROC"] >= 0.80
    assert results["pixel_AUROC"] >= 0.80
