"""DefectMaker saliency: user masks, the foreground estimate and its fallbacks (SPEC §3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_pdae.data.defectmaker import Saliency, estimate_foreground
from anomalib_pdae.data.defectmaker.saliency import find_saliency_mask


def _object_image(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured disc on a noisy dark background, and the disc's true mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:128, :160]
    disc = (yy - 70) ** 2 + (xx - 75) ** 2 < 40**2
    image = rng.normal(30, 6, (128, 160, 3))
    image[disc] = rng.normal(170, 25, (disc.sum(), 3))
    return image.clip(0, 255).astype(np.uint8), disc


def _texture(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(128, 30, (96, 96, 3)).clip(0, 255).astype(np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def test_foreground_estimate_finds_object() -> None:
    for seed in range(3):
        image, disc = _object_image(seed)
        estimate = estimate_foreground(image)
        assert estimate is not None and estimate.shape == disc.shape
        assert _iou(estimate, disc) > 0.9


def test_foreground_estimate_fills_holes() -> None:
    image, _ = _object_image()
    image[65:75, 70:80] = 30  # a background-coloured hole inside the object
    assert estimate_foreground(image)[70, 75]


def test_texture_has_no_foreground() -> None:
    for seed in range(3):
        assert estimate_foreground(_texture(seed)) is None
    assert estimate_foreground(np.full((32, 32, 3), 90, np.uint8)) is None


def test_real_texture_falls_back_to_whole_image(kolektorsdd: Path) -> None:
    path = sorted((kolektorsdd / "train" / "good").glob("*.png"))[0]
    image = np.asarray(Image.open(path).convert("RGB"))
    assert Saliency("foreground")(image, path).all()


def test_modes(tmp_path: Path) -> None:
    image, disc = _object_image()
    assert Saliency("image")(image).all()
    assert _iou(Saliency("foreground")(image), disc) > 0.9
    with pytest.raises(ValueError, match="saliency must be one of"):
        Saliency("edn")


def _mvtec_like(tmp_path: Path, image: np.ndarray) -> Path:
    path = tmp_path / "cat" / "train" / "good" / "000.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(image).save(path)
    return path


def test_user_mask_is_used_when_present(tmp_path: Path) -> None:
    image, _ = _object_image()
    path = _mvtec_like(tmp_path, image)
    user = np.zeros((64, 80), np.uint8)  # another resolution: resized to the image
    user[:32, :40] = 255
    (tmp_path / "cat" / "saliency" / "good").mkdir(parents=True)
    Image.fromarray(user).save(tmp_path / "cat" / "saliency" / "good" / "000.png")
    mask = Saliency("foreground")(image, path)
    assert mask[:64, :80].all() and not mask[64:].any() and not mask[:, 80:].any()


def test_user_mask_in_explicit_folder(tmp_path: Path) -> None:
    image, _ = _object_image()
    path = _mvtec_like(tmp_path, image)
    folder = tmp_path / "masks"
    folder.mkdir()
    user = np.zeros(image.shape[:2], np.uint8)
    user[5:10, 5:10] = 1
    Image.fromarray(user).save(folder / "000.bmp")
    assert find_saliency_mask(path, folder) == folder / "000.bmp"
    assert Saliency("image", saliency_dir=folder)(image, path).sum() == 25


def test_missing_masks_never_crash(tmp_path: Path) -> None:
    image, disc = _object_image()
    path = _mvtec_like(tmp_path, image)
    assert find_saliency_mask(path) is None
    assert find_saliency_mask(Path("000.png")) is None  # no parent folders at all
    assert _iou(Saliency("foreground")(image, path), disc) > 0.9
    assert Saliency("image", saliency_dir=tmp_path / "absent")(image, path).all()
    assert Saliency("image")(image, tmp_path / "nowhere" / "x.png").all()


def test_unreadable_or_empty_masks_fall_back(tmp_path: Path) -> None:
    image, _ = _object_image()
    path = _mvtec_like(tmp_path, image)
    folder = tmp_path / "cat" / "saliency"
    folder.mkdir()
    (folder / "000.png").write_bytes(b"not an image")
    assert Saliency("image")(image, path).all()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "000.png")
    assert Saliency("image")(image, path).all()
