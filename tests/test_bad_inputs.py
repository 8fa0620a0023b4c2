"""Every model against unusual and bad input: each answered by a clear message or a correct run.

The cases of ``test_ldknn_inputs.py`` for all four models, plus images far larger than the input
size, a test split with only normal images, masks whose size differs from their image, a
non-image file in a class folder, one model's checkpoint loaded as another, and a ``weights=``
file of another architecture. A failed run leaves no checkpoint behind.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from anomalib.data import Folder, MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from PIL import Image
from safetensors.torch import save_file

from anomalib_pdae.data.images import convert_to_8bit
from anomalib_pdae.data.synthetic import make_synthetic_dataset
from anomalib_pdae.models.components import WeightsError
from tests.small_models import MODELS, SIZE, small_model

pytestmark = pytest.mark.slow

OTHER = {"Ldknn": "Reb", "Reb": "Ldknn", "Pdae": "Ulsad", "Ulsad": "Pdae"}


def _engine(root: Path) -> Engine:
    return Engine(default_root_dir=root, logger=False, enable_progress_bar=False, max_epochs=1)


def _datamodule(root: Path, **kwargs) -> MVTecAD:
    args = {"train_batch_size": 2, "eval_batch_size": 4, "num_workers": 0, "seed": 0} | kwargs
    return MVTecAD(root=root, category="parts", **args)


def _checkpoints(root: Path) -> list[Path]:
    return list(root.rglob("*.ckpt"))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small clean dataset of grey pictures in RGB files (category ``parts``); cases spoil copies."""
    root = tmp_path_factory.mktemp("source")
    folder = make_synthetic_dataset(
        root, category="parts", n_train=6, n_test_good=2, n_test_defect=2, image_size=SIZE
    )
    for path in (folder / "train").rglob("*.png"):
        _in_mode(path, "RGB").save(path)
    for path in (folder / "test").rglob("*.png"):
        _in_mode(path, "RGB").save(path)
    return root


def _copy(source: Path, tmp: Path) -> Path:
    shutil.copytree(source, tmp / "data")
    return tmp / "data"


@pytest.fixture(scope="module")
def fitted(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple]:
    """``fitted(name)``: the model fitted once on the clean dataset, with its checkpoint."""
    cache: dict[str, tuple] = {}

    def fit(name: str) -> tuple:
        if name not in cache:
            tmp = tmp_path_factory.mktemp(f"fit_{name}")
            seed_everything(0)
            model = small_model(name, tmp)
            _engine(tmp).fit(model, datamodule=_datamodule(source))
            (checkpoint,) = tmp.rglob("model.ckpt")
            cache[name] = (model.eval(), checkpoint)
        return cache[name]

    return fit


# ---- unusual but valid input: a correct run ---------------------------------------------------


def _scores(model, datamodule: MVTecAD) -> torch.Tensor:
    datamodule.setup()
    images = torch.stack([item.image for item in datamodule.test_data])
    with torch.no_grad():
        return model(images).pred_score


def _in_mode(path: Path, mode: str) -> Image.Image:
    grey = np.asarray(Image.open(path).convert("L"))
    if mode == "I;16":  # full 16-bit range: 257·g rescales back to exactly g
        return Image.fromarray(grey.astype(np.uint16) * 257)
    return Image.fromarray(grey).convert(mode)


@pytest.mark.parametrize("name", MODELS)
def test_grey_rgba_and_converted_16_bit_images_score_like_rgb(name, fitted, source, tmp_path) -> None:
    """The (grey) test pictures stored as L, RGBA and converted 16-bit files score as the RGB ones."""
    model, _ = fitted(name)
    expected = _scores(model, _datamodule(source))
    assert len(set(expected.tolist())) > 1  # the images really score differently
    for mode in ("L", "RGBA", "I;16"):
        root = tmp_path / mode.replace(";", "")
        shutil.copytree(source, root)
        for path in (root / "parts" / "test").rglob("*.png"):
            _in_mode(path, mode).save(path)
        if mode == "I;16":
            convert_to_8bit(root, tmp_path / "converted")
            root = tmp_path / "converted"
        torch.testing.assert_close(_scores(model, _datamodule(root)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_images_far_larger_than_the_input(name: str, tmp_path: Path) -> None:
    """4000×3000 images are resized by the pre-processor: a normal run at the model's input size."""
    root = tmp_path / "data"
    make_synthetic_dataset(root, category="parts", n_train=5, n_test_good=1, n_test_defect=1, image_size=SIZE)
    for path in (root / "parts").rglob("*.png"):
        resample = Image.NEAREST if "ground_truth" in path.parts else Image.BILINEAR
        Image.open(path).resize((4000, 3000), resample).save(path)
    model = small_model(name, tmp_path)
    engine = _engine(tmp_path / "run")
    engine.fit(model, datamodule=_datamodule(root))
    (result,) = engine.test(model, datamodule=_datamodule(root), verbose=False)
    assert np.isfinite(result["image_AUROC"])
    assert _checkpoints(tmp_path / "run")


@pytest.mark.parametrize("name", MODELS)
def test_non_image_files_in_class_folders_are_ignored(name: str, source: Path, tmp_path: Path) -> None:
    root = _copy(source, tmp_path)
    (root / "parts" / "train" / "good" / "notes.txt").write_text("taken on line 3")
    (root / "parts" / "test" / "defect" / ".DS_Store").write_bytes(b"\x00\x01")
    datamodule = _datamodule(root)
    model = small_model(name, tmp_path)
    engine = _engine(tmp_path / "run")
    engine.fit(model, datamodule=datamodule)
    assert len(datamodule.test_data) == 4
    (result,) = engine.test(model, datamodule=datamodule, verbose=False)
    assert np.isfinite(result["image_AUROC"])


@pytest.mark.parametrize("name", MODELS)
def test_test_split_with_only_normal_images_warns(name: str, fitted, source: Path, tmp_path: Path) -> None:
    """Image AUROC is undefined without anomalous images: a warning saying so, and no crash."""
    model, _ = fitted(name)
    root = _copy(source, tmp_path)
    shutil.rmtree(root / "parts" / "test" / "defect")
    shutil.rmtree(root / "parts" / "ground_truth")
    with pytest.warns(UserWarning, match=r"The test split of MVTecAD .* holds only normal images"):
        (result,) = _engine(tmp_path / "run").test(model, datamodule=_datamodule(root), verbose=False)
    assert "image_AUROC" in result


@pytest.mark.parametrize("name", MODELS)
def test_mask_of_another_size_warns_and_runs(name: str, fitted, source: Path, tmp_path: Path) -> None:
    """A mask stored at another size is named in a warning; it is resized to its image."""
    model, _ = fitted(name)
    root = _copy(source, tmp_path)
    mask = root / "parts" / "ground_truth" / "defect" / "000_mask.png"
    Image.open(mask).resize((100, 80), Image.NEAREST).save(mask)
    with pytest.warns(UserWarning, match=r"1 mask\(s\) differ in size .*000_mask\.png \(100×80\) for 64×64"):
        (result,) = _engine(tmp_path / "run").test(model, datamodule=_datamodule(root), verbose=False)
    assert np.isfinite(result["pixel_AUROC"])


# ---- bad input: a clear message, nothing half-written -----------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_missing_dataset_folder(name: str, tmp_path: Path) -> None:
    """``Folder`` names the missing folder. (``MVTecAD`` would try to download the benchmark.)"""
    datamodule = Folder(name="parts", root=tmp_path / "nowhere", normal_dir="good", num_workers=0)
    with pytest.raises(FileNotFoundError, match=r"Path does not exist: .*nowhere/good"):
        _engine(tmp_path / "run").fit(small_model(name, tmp_path), datamodule=datamodule)
    assert not _checkpoints(tmp_path / "run")


@pytest.mark.parametrize("name", MODELS)
def test_empty_dataset_folder(name: str, tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    with pytest.raises(RuntimeError, match=r"Found 0 images in .*parts"):
        _engine(tmp_path / "run").fit(small_model(name, tmp_path), datamodule=_datamodule(tmp_path))
    assert not _checkpoints(tmp_path / "run")


@pytest.mark.parametrize("name", MODELS)
def test_dataset_without_training_images(name: str, source: Path, tmp_path: Path) -> None:
    root = _copy(source, tmp_path)
    shutil.rmtree(root / "parts" / "train" / "good")
    (root / "parts" / "train" / "good").mkdir()
    with pytest.raises(ValueError, match=rf"{name} received no training images: MVTecAD's training split"):
        _engine(tmp_path / "run").fit(small_model(name, tmp_path), datamodule=_datamodule(root))
    assert not _checkpoints(tmp_path / "run")


@pytest.mark.parametrize("name", MODELS)
def test_corrupt_image_is_named(name: str, source: Path, tmp_path: Path) -> None:
    root = _copy(source, tmp_path)
    (root / "parts" / "train" / "good" / "003.png").write_bytes(b"not an image")
    with pytest.raises(Exception, match=r"cannot identify image file .*train/good/003\.png") as error:
        _engine(tmp_path / "run").fit(small_model(name, tmp_path), datamodule=_datamodule(root))
    assert type(error.value).__name__ == "UnidentifiedImageError"
    assert not _checkpoints(tmp_path / "run")


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_of_another_model(name: str, fitted, tmp_path: Path, source: Path) -> None:
    _, checkpoint = fitted(OTHER[name])
    message = rf"written by {OTHER[name]}, not {name}: load it with {OTHER[name]}\.load_from_checkpoint"
    with pytest.raises(ValueError, match=message):
        type(small_model(name)).load_from_checkpoint(checkpoint)
    with pytest.raises(ValueError, match=message):
        _engine(tmp_path).test(
            small_model(name, tmp_path), datamodule=_datamodule(source), ckpt_path=checkpoint
        )


@pytest.mark.parametrize("name", MODELS)
def test_weights_file_of_another_architecture(name: str, tmp_path: Path) -> None:
    path = tmp_path / "mobilenetv2_100.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("mobilenetv2_100").state_dict().items()}, path)
    weights = [path] if name == "Pdae" else path
    message = r"weights file .*mobilenetv2_100\.safetensors does not fit backbone 'resnet18"
    with pytest.raises(WeightsError, match=message):
        small_model(name, tmp_path, weights=weights)


@pytest.mark.parametrize("name", MODELS)
def test_unknown_backbone_and_layer_are_named(name: str) -> None:
    def spelled(backbone: str, layers: list[str]) -> dict:
        if name == "Pdae":
            return {"backbones": [(backbone, layers)]}
        return {"backbone": backbone, "layers": layers}

    with pytest.raises(ValueError, match="Unknown backbone 'resnet1800'"):
        small_model(name, **spelled("resnet1800", ["layer2", "layer3"]))
    with pytest.raises(ValueError, match=r"no feature layer named 'layer9'\. Available layers: "):
        small_model(name, **spelled("resnet18", ["layer2", "layer9"]))
