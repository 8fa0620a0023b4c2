"""CutPaste and DRAEM defects for REB's Table 5 representations (REB §4.6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from anomalib_pdae.data.defectmaker import (
    CutPasteDefects,
    DefectMaker,
    DraemDefects,
    defect_batch,
    defect_task,
)
from anomalib_pdae.data.defectmaker.shapes import perlin_shape, rect_scar_shape, rect_shape

SIZE = 256


def _image(seed: int, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _saliency(size: int = SIZE) -> np.ndarray:
    return np.ones((size, size), bool)


def _region(defect) -> np.ndarray:
    return defect.weight > 0


@pytest.mark.parametrize("seed", range(20))
def test_rectangle_is_a_cutpaste_box(seed: int) -> None:
    mask = rect_shape((SIZE, SIZE), np.random.default_rng(seed))
    assert mask.all()
    area = mask.size / SIZE**2
    aspect = max(mask.shape) / min(mask.shape)
    assert 0.02 - 0.002 <= area <= 0.15 + 0.002
    assert aspect <= 3.3 * 1.05


@pytest.mark.parametrize("seed", range(20))
def test_scar_is_a_thin_rotated_rectangle(seed: int) -> None:
    mask = rect_scar_shape((SIZE, SIZE), np.random.default_rng(seed))
    # width 7-20 and length 15-29 px at 256 px, turned by up to 45 degrees
    assert 0.8 * 7 * 15 <= mask.sum() <= 1.2 * 20 * 29
    assert max(mask.shape) <= (20 + 29) / np.sqrt(2) + 2
    assert ndimage.label(mask)[1] == 1


def test_cutpaste_pastes_a_region_of_the_source() -> None:
    image = _image(0)
    rows, cols = np.indices((SIZE, SIZE))
    source = np.stack([rows, cols, np.full_like(rows, 77)], axis=-1).astype(np.uint8)  # pixel = (row, col)
    task = CutPasteDefects(jitter=0.0)
    for label in (1, 2):
        defect = task.make_label(label, image, _saliency(), np.random.default_rng(label), source)
        region = _region(defect)
        assert defect.label == label
        np.testing.assert_array_equal(defect.image[~region], image[~region])
        # pasted with w >= 0.99: each pixel is its source pixel, at one fixed offset from it
        pasted = defect.image[region].astype(int)
        offset_rows = pasted[:, 0] - rows[region]
        offset_cols = pasted[:, 1] - cols[region]
        assert np.ptp(offset_rows) <= 6 and np.ptp(offset_cols) <= 6
        assert np.abs(pasted[:, 2] - 77).max() <= 3


def test_cutpaste_rectangle_has_the_box_shape() -> None:
    defect = CutPasteDefects().make_label(1, _image(0), _saliency(), np.random.default_rng(0), _image(1))
    region = _region(defect)
    rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    assert region.sum() == len(rows) * len(cols)  # a filled axis-aligned rectangle


def test_perlin_region_covers_about_half_the_image() -> None:
    coverages = [perlin_shape((SIZE, SIZE), np.random.default_rng(seed)).mean() for seed in range(30)]
    assert min(coverages) > 0 and max(coverages) < 1
    assert 0.3 < np.mean(coverages) < 0.7


def test_perlin_region_depends_on_the_rng_only() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    one = perlin_shape((96, 80), np.random.default_rng(5))
    assert torch.equal(torch.rand(3), expected)  # torch's global generator is left as it was
    two = perlin_shape((96, 80), np.random.default_rng(5))
    other = perlin_shape((96, 80), np.random.default_rng(6))
    assert one.shape == (96, 80)
    assert np.array_equal(one, two) and not np.array_equal(one, other)


def _textures(folder: Path) -> dict[str, tuple[int, int, int]]:
    colours = {"red": (250, 10, 10), "blue": (10, 10, 250)}
    (folder / "banded").mkdir(parents=True)
    Image.new("RGB", (300, 280), colours["red"]).save(folder / "banded" / "red.png")
    Image.new("RGB", (20, 30), colours["blue"]).save(folder / "blue.jpg", quality=100)  # needs enlarging
    (folder / "notes.txt").write_text("not an image")
    return colours


def test_draem_blends_a_texture_through_a_perlin_region(tmp_path: Path) -> None:
    colours = _textures(tmp_path)
    task = DraemDefects(texture_dir=tmp_path, jitter=0.0)
    assert [path.name for path in task.textures] == ["red.png", "blue.jpg"]
    background = np.array([100, 120, 140])
    image = np.broadcast_to(background, (SIZE, SIZE, 3)).astype(np.uint8)
    seen = set()
    for seed in range(12):
        defect = task.make_label(1, image, _saliency(), np.random.default_rng(seed))
        region = _region(defect)
        weight = float(defect.weight[region][0])
        assert 0.2 <= weight <= 1.0 and np.allclose(defect.weight[region], weight)
        assert 0.05 < region.mean() < 0.95
        np.testing.assert_array_equal(defect.image[~region], image[~region])
        pixel = defect.image[region][0].astype(float)
        matches = [
            name
            for name, colour in colours.items()
            if np.abs(pixel - (weight * np.array(colour) + (1 - weight) * background)).max() <= 3
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {"red", "blue"}


def test_draem_texture_is_grey_on_grey_images(tmp_path: Path) -> None:
    _textures(tmp_path)
    image = np.full((64, 64, 3), 100, np.uint8)
    defect = DraemDefects(texture_dir=tmp_path).make_label(1, image, _saliency(64), np.random.default_rng(0))
    assert np.array_equal(defect.image[..., 0], defect.image[..., 2])


def test_draem_without_textures_blends_the_source_image() -> None:
    image, source = np.full((64, 64, 3), 100, np.uint8), np.full((64, 64, 3), 200, np.uint8)
    defect = DraemDefects(jitter=0.0).make_label(1, image, _saliency(64), np.random.default_rng(0), source)
    region = _region(defect)
    weight = float(defect.weight[region][0])
    assert np.abs(defect.image[region].astype(float) - (100 + 100 * weight)).max() <= 1


def test_texture_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Texture folder not found"):
        DraemDefects(texture_dir=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images"):
        DraemDefects(texture_dir=tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "bad.png").write_bytes(b"not a png")
    task = DraemDefects(texture_dir=tmp_path / "broken")
    with pytest.raises(ValueError, match=r"bad\.png"):
        task.make_label(1, _image(0, 64), _saliency(64), np.random.default_rng(0))


def test_task_selection() -> None:
    assert isinstance(defect_task("defectmaker", soften_prob=0.2), DefectMaker)
    assert defect_task("defectmaker").num_classes == 7
    assert defect_task("defectmaker_noise").class_names == (
        "normal",
        "bezier+noise",
        "bezier_scar+noise",
        "bezier_clump+noise",
    )
    assert defect_task("defectmaker_cutpaste").num_classes == 4
    assert defect_task("cutpaste").num_classes == 3
    assert defect_task("draem").num_classes == 2
    with pytest.raises(ValueError, match="defects must be one of"):
        defect_task("perlin")
    with pytest.raises(ValueError, match="texture_dir"):
        defect_task("cutpaste", texture_dir=".")


def test_single_fill_defectmaker_uses_that_fill_only() -> None:
    image = np.full((96, 96, 3), 128, np.uint8)  # a noise fill on a flat image is never flat
    maker = DefectMaker(jitter=0.0, fills=("cutpaste",))
    samples = maker.variants(image, _saliency(96), np.random.default_rng(0), source=image)
    assert [s.label for s in samples] == [0, 1, 2, 3]
    for sample in samples:  # a cut-paste of the flat image onto itself leaves it flat
        assert np.abs(sample.image.astype(int) - 128).max() <= 1
    with pytest.raises(ValueError, match="noise"):
        maker.label("bezier", "noise")
    with pytest.raises(ValueError, match="fills"):
        DefectMaker(fills=())


@pytest.mark.parametrize(("task", "classes"), [(CutPasteDefects(), 3), (DraemDefects(), 2)])
def test_batches_hold_every_class_per_image(task, classes: int) -> None:
    images = torch.rand(3, 3, 64, 64)
    batch, labels = defect_batch(images, [_saliency(64)] * 3, task, np.random.default_rng(0))
    assert batch.shape == (3 * classes, 3, 64, 64)
    assert labels.tolist() == list(range(classes)) * 3
    again, _ = defect_batch(images, [_saliency(64)] * 3, task, np.random.default_rng(0))
    assert torch.equal(batch, again)
