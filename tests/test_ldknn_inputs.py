"""Ldknn on grey, RGBA and 16-bit images, and a clear error for each kind of bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import Folder, MVTecAD
from anomalib.data.utils import read_image as anomalib_read_image
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from PIL import Image

from anomalib_pdae import Ldknn
from anomalib_pdae.data.images import convert_to_8bit, read_image
from anomalib_pdae.data.synthetic import make_synthetic_dataset

SIZE = 64
MODES = ("RGB", "L", "RGBA", "I;16")


def _model(**kwargs) -> Ldknn:
    args = {"backbone": "resnet18", "pre_trained": False, "k": 3, "embedding_dim": 32} | kwargs
    return Ldknn(**args, pre_processor=Ldknn.configure_pre_processor((SIZE, SIZE)))


def _engine(tmp: Path) -> Engine:
    return Engine(default_root_dir=tmp, logger=False, enable_progress_bar=False)


def _datamodule(root: Path, category: str = "parts") -> MVTecAD:
    return MVTecAD(root=root, category=category, train_batch_size=8, eval_batch_size=8, num_workers=0)


def _in_mode(grey: np.ndarray, mode: str) -> Image.Image:
    """The same grey content stored as 8-bit RGB, L, RGBA or 16-bit greyscale.

    The 16-bit image uses the full range with low bits that 8 bits cannot hold: each value lies
    in ``[257·g, 257·g + 128)``, so it rounds back to the 8-bit ``g`` when rescaled.
    """
    if mode == "I;16":
        noise = np.random.default_rng(int(grey.sum())).integers(0, 128, grey.shape)
        return Image.fromarray((grey.astype(np.uint16) * 257 + noise).astype(np.uint16))
    if mode == "L":
        return Image.fromarray(grey)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if mode == "RGBA":
        return Image.fromarray(np.concatenate([rgb, np.full_like(grey, 255)[..., None]], axis=2))
    return Image.fromarray(rgb)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One dataset root per image mode, all holding the same (grey) pictures; masks stay 8-bit."""
    base = tmp_path_factory.mktemp("modes")
    source = make_synthetic_dataset(
        base / "source", category="parts", n_train=8, n_test_good=3, n_test_defect=3, image_size=SIZE
    )
    roots = {}
    for mode in MODES:
        root = base / mode.replace(";", "")
        for path in sorted(source.rglob("*.png")):
            target = root / "parts" / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.parent.parent.name == "ground_truth":
                shutil.copy(path, target)
                continue
            grey = np.asarray(Image.open(path).convert("L"))
            _in_mode(grey, mode).save(target)
        roots[mode] = root
    assert Image.open(next((roots["I;16"] / "parts" / "train" / "good").iterdir())).mode == "I;16"
    return roots


def _fit_and_score(root: Path, tmp: Path) -> torch.Tensor:
    """Fit on the training folder and score every test image, both read by anomalib's datamodule."""
    seed_everything(0)
    model = _model()
    datamodule = _datamodule(root)
    _engine(tmp).fit(model, datamodule=datamodule)
    images = torch.stack([item.image for item in datamodule.test_data])
    with torch.no_grad():
        return model.eval().model(model.pre_processor.transform(images)).pred_score


@pytest.fixture(scope="module")
def rgb_scores(datasets: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    return _fit_and_score(datasets["RGB"], tmp_path_factory.mktemp("rgb"))


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grey_and_rgba_datasets_score_like_rgb(mode, datasets, rgb_scores, tmp_path) -> None:
    scores = _fit_and_score(datasets[mode], tmp_path)
    torch.testing.assert_close(scores, rgb_scores, rtol=1e-5, atol=1e-6)


def test_anomalib_reader_saturates_16_bit_images(datasets: dict[str, Path]) -> None:
    """Why ``convert_to_8bit`` exists: anomalib clips 16-bit values to 255 instead of rescaling."""
    path = datasets["I;16"] / "parts" / "train" / "good" / "000.png"
    theirs = anomalib_read_image(path, as_tensor=True)
    ours = read_image(path)
    rgb = anomalib_read_image(datasets["RGB"] / "parts" / "train" / "good" / "000.png", as_tensor=True)
    assert (theirs == 1).float().mean() > 0.9  # nearly everything white
    torch.testing.assert_close(ours, rgb)  # rescaled, not clipped


@pytest.mark.parametrize("mode", MODES)
def test_read_image_gives_the_same_picture_in_every_mode(mode: str, datasets: dict[str, Path]) -> None:
    name = Path("parts") / "test" / "defect" / "001.png"
    torch.testing.assert_close(read_image(datasets[mode] / name), read_image(datasets["RGB"] / name))


def test_16_bit_dataset_converted_to_8_bit_scores_like_rgb(datasets, rgb_scores, tmp_path) -> None:
    converted = convert_to_8bit(datasets["I;16"], tmp_path / "converted")
    assert converted == 8 + 3 + 3  # the images; the 8-bit masks were copied unchanged
    mask = Path("parts") / "ground_truth" / "defect" / "000_mask.png"
    assert (tmp_path / "converted" / mask).read_bytes() == (datasets["I;16"] / mask).read_bytes()
    scores = _fit_and_score(tmp_path / "converted", tmp_path / "run")
    torch.testing.assert_close(scores, rgb_scores, rtol=1e-5, atol=1e-6)


def test_convert_to_8bit_names_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Dataset folder not found: .*nowhere"):
        convert_to_8bit(tmp_path / "nowhere", tmp_path / "out")


# ---- bad input ----------------------------------------------------------------------------------


def test_missing_dataset_folder(tmp_path: Path) -> None:
    """``Folder`` names the missing folder. (``MVTecAD`` would try to download the benchmark instead.)"""
    datamodule = Folder(name="parts", root=tmp_path / "nowhere", normal_dir="good", num_workers=0)
    with pytest.raises(FileNotFoundError, match=r"Path does not exist: .*nowhere/good"):
        _engine(tmp_path).fit(_model(), datamodule=datamodule)


def test_empty_dataset_folder(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    with pytest.raises(RuntimeError, match=r"Found 0 images in .*parts"):
        _engine(tmp_path).fit(_model(), datamodule=_datamodule(tmp_path))


def test_dataset_without_training_images(datasets: dict[str, Path], tmp_path: Path) -> None:
    """Test images but an empty train/good: our message, not the data loader's ``num_samples=0``."""
    root = tmp_path / "data"
    shutil.copytree(datasets["RGB"] / "parts" / "test", root / "parts" / "test")
    shutil.copytree(datasets["RGB"] / "parts" / "ground_truth", root / "parts" / "ground_truth")
    (root / "parts" / "train" / "good").mkdir(parents=True)
    with pytest.raises(
        ValueError, match=r"Ldknn received no training images: MVTecAD's training split is empty"
    ):
        _engine(tmp_path).fit(_model(), datamodule=_datamodule(root))


def test_corrupt_image_is_named(datasets: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(datasets["RGB"], root)
    (root / "parts" / "train" / "good" / "003.png").write_bytes(b"not an image")
    with pytest.raises(Exception, match=r"cannot identify image file .*train/good/003\.png") as error:
        _engine(tmp_path).fit(_model(), datamodule=_datamodule(root))
    assert type(error.value).__name__ == "UnidentifiedImageError"


def test_k_not_smaller_than_the_bank(datasets: dict[str, Path], tmp_path: Path) -> None:
    """8 training images of 8×8 patches: a bank of 512, so K = 512 cannot have K neighbours."""
    with pytest.raises(ValueError, match=r"k=512 must be smaller than the memory bank \(512 patches"):
        _engine(tmp_path).fit(_model(k=512), datamodule=_datamodule(datasets["RGB"]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, r"k \(neighbourhood size\) must be an integer >= 1, got 0"),
        ({"ld_coefficient": -0.5}, r"ld_coefficient \(gamma\) must be >= 0, got -0.5"),
        ({"backbone": "resnet1800"}, "Unknown backbone 'resnet1800'"),
        ({"layers": ["layer2", "layer9"]}, "no feature layer named 'layer9'. Available layers: "),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _model(**kwargs)
