"""The authors' backbone checkpoints as defaults: weights tags, REB's embedding length, PDAE's widths."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import anomalib_pdae.data.cutpaste as cutpaste_module
from anomalib_pdae import Ldknn, Pdae, Reb, Ulsad
from anomalib_pdae.data.cutpaste import CutPaste
from anomalib_pdae.models.components import Backbone, reb_embedding_dim
from anomalib_pdae.models.ldknn import LdknnModel, LdknnSettings
from anomalib_pdae.models.pdae.autoencoder import FeatureAutoEncoder
from anomalib_pdae.models.pdae.torch_model import PdaeModel
from anomalib_pdae.models.reb.torch_model import RebModel

ANOMALIB = str(Path(sys.executable).with_name("anomalib"))


def _default(cls: type, name: str) -> object:
    return inspect.signature(cls).parameters[name].default


def test_defaults_name_the_checkpoints_the_authors_loaded() -> None:
    # REB / PatchCore: torchvision's ImageNet V1 ResNet-18 (timm's untagged name is a1_in1k).
    assert _default(Ldknn, "backbone") == _default(Reb, "backbone") == "resnet18.tv_in1k"
    # PDAE: timm's only checkpoints of its two backbones; ULSAD: timm <= 0.6.12's wide_resnet50_2.
    assert [name for name, _ in _default(Pdae, "backbones")] == [
        "densenet201.tv_in1k",
        "cait_xxs24_384.fb_dist_in1k",
    ]
    assert _default(Ulsad, "backbone") == "wide_resnet50_2.racm_in1k"


def test_configs_pin_the_same_tags() -> None:
    configs = Path(__file__).resolve().parents[1] / "configs"
    for config in ("pdae/mvtec.yaml", "pdae/loco.yaml"):
        text = (configs / config).read_text()
        assert "[densenet201.tv_in1k," in text and "[cait_xxs24_384.fb_dist_in1k," in text
    for config in ("ulsad/mvtec.yaml", "ulsad/loco.yaml"):
        assert "backbone: wide_resnet50_2.racm_in1k\n" in (configs / config).read_text()


@pytest.mark.parametrize(
    ("backbone", "expected"),
    [
        ("resnet18.tv_in1k", 512),
        ("resnet18", 512),
        ("wide_resnet50_2.tv_in1k", 1024),
        ("wide_resnet101_2.tv_in1k", 1024),
        ("mobilenetv2_100", 512),
    ],
)
def test_embedding_dim_defaults_to_rebs_for_the_backbone(backbone: str, expected: int) -> None:
    assert reb_embedding_dim(backbone) == expected
    with torch.device("meta"):  # the real architecture, no weights
        model = LdknnModel(LdknnSettings(backbone=backbone, layers=_layers(backbone)), pre_trained=False)
    assert model.embedding.embedding_dim == expected


def test_explicit_embedding_dim_wins() -> None:
    with torch.device("meta"):
        model = LdknnModel(
            LdknnSettings(backbone="wide_resnet50_2.tv_in1k", embedding_dim=256), pre_trained=False
        )
    assert model.embedding.embedding_dim == 256


def _layers(backbone: str) -> tuple[str, ...]:
    return ("blocks.2", "blocks.4") if backbone.startswith("mobilenet") else ("layer2", "layer3")


def test_tagged_name_takes_the_tags_normalisation() -> None:
    """The tag picks the checkpoint's own input statistics (ResNet-18 a1 vs tv share ImageNet's)."""
    lite = Backbone("tf_efficientnet_lite0.in1k", ["blocks.2"], pre_trained=False)
    assert lite.name == "tf_efficientnet_lite0.in1k"
    assert lite.mean.flatten().tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_unknown_tag_is_refused_with_the_name() -> None:
    with pytest.raises(
        ValueError, match=r"Unknown weights tag 'no_such_tag' for backbone 'resnet18'.*tv_in1k"
    ):
        Backbone("resnet18.no_such_tag", ["layer2"], pre_trained=False)


def test_local_weights_file_loads_under_a_tagged_name(efficientnet_weights: Path) -> None:
    backbone = Backbone("tf_efficientnet_lite0.in1k", ["blocks.2", "blocks.4"], weights=efficientnet_weights)
    state = load_file(efficientnet_weights)
    ours = backbone.model.state_dict()
    shared = [name for name in ours if name in state]
    assert len(shared) > 50
    assert all(torch.equal(ours[name], state[name]) for name in shared)


def test_cli_shows_and_accepts_tagged_names() -> None:
    result = subprocess.run(
        [
            *(ANOMALIB, "train", "--model", "Ldknn", "--data", "MVTecAD", "--print_config"),
            *("--model.backbone", "wide_resnet50_2.tv_in1k"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "    backbone: wide_resnet50_2.tv_in1k\n" in result.stdout
    assert "    embedding_dim: null\n" in result.stdout  # null = REB's length for the backbone


def test_pdae_autoencoder_keeps_the_authors_widths_whatever_the_input_width() -> None:
    assert FeatureAutoEncoder(72).hidden_widths == [512, 256, 128]
    assert FeatureAutoEncoder(1792).hidden_widths == [512, 256, 128]
    assert FeatureAutoEncoder(72, hidden_widths=None).hidden_widths == [64, 32, 16]  # the option
    model = PdaeModel([("resnet18", ["layer1", "layer2"])], image_size=(128, 128), pre_trained=False)
    assert model.autoencoder.hidden_widths == [512, 256, 128]


def _scar_sizes(augment: CutPaste, monkeypatch: pytest.MonkeyPatch, width: int) -> list[tuple[int, int]]:
    """``(width, length)`` of every scar CutPaste draws on ``width``-pixel images."""
    sizes = []
    original = cutpaste_module._rotated_rectangle

    def recording(height, image_width, cy, cx, size_y, size_x, angle):
        if angle != 0.0:  # rectangles are not rotated, scars are
            sizes.append((size_x, size_y))
        return original(height, image_width, cy, cx, size_y, size_x, angle)

    monkeypatch.setattr(cutpaste_module, "_rotated_rectangle", recording)
    torch.manual_seed(0)
    augment(torch.rand(64, 3, width, width))
    return sizes


def test_cutpaste_scars_are_native_pixels_scaled_to_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    native = _scar_sizes(CutPaste(native_width=1600), monkeypatch, 384)
    assert native and max(w for w, _ in native) <= round(16 * 384 / 1600)
    assert max(length for _, length in native) <= round(25 * 384 / 1600)
    relative = _scar_sizes(CutPaste(), monkeypatch, 384)  # unknown native width: 256-px sizes
    assert max(length for _, length in relative) > 25


def test_pdae_reads_the_native_width_of_the_training_images(tmp_path: Path) -> None:
    picture = tmp_path / "000.png"
    Image.new("RGB", (1600, 1100)).save(picture)
    samples = pd.DataFrame({"image_path": [str(picture)]})
    model = Pdae(
        backbones=[("resnet18", ["layer1", "layer2"])],
        pre_trained=False,
        image_size=(64, 64),
        hidden_widths=[32],
        cutpaste=True,
    )
    train_data = type("Split", (), {"samples": samples, "__len__": lambda _: len(samples)})()
    model._trainer = SimpleNamespace(datamodule=SimpleNamespace(train_data=train_data))
    model.setup("fit")
    assert model.cutpaste.native_width == 1600


def test_reb_builds_classifier_and_ldknn_on_a_tagged_wide_resnet() -> None:
    with torch.device("meta"):
        model = RebModel(LdknnSettings(backbone="wide_resnet50_2.tv_in1k"), pre_trained=False)
    assert model.classifier.encoder.pretrained_cfg["tag"] == "tv_in1k"
    assert model.ldknn.embedding.embedding_dim == 1024
