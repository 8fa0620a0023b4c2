"""DefectMaker: shapes, fills, fusing, labels, determinism (SPEC §3)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from anomalib_pdae.data.defectmaker import CLASS_NAMES, DEFECT_TYPES, DefectMaker, bezier, defect_batch
from anomalib_pdae.data.defectmaker.augment import TRANSPOSES, color_jitter, random_transpose
from anomalib_pdae.data.defectmaker.bezier import bezier_mask, closed_bezier_curve, random_bezier_points
from anomalib_pdae.data.defectmaker.fills import cutpaste_fill, noise_fill
from anomalib_pdae.data.defectmaker.fusing import fuse, soften_mask
from anomalib_pdae.data.defectmaker.placement import box_around
from anomalib_pdae.data.defectmaker.shapes import (
    bezier_clump_shape,
    bezier_scar_shape,
    bezier_shape,
    cutpaste_box,
    make_shape,
)

SIZES = [(256, 256), (128, 320), (96, 96)]


def _image(seed: int, size: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3)).astype(np.uint8)


def _reference_curve(points: np.ndarray, k: float, samples: int) -> np.ndarray:
    """Per-vertex handles and de Casteljau evaluation, one segment at a time."""
    n = len(points)
    handles_in, handles_out = [], []
    for i in range(n):
        prev, here, nxt = points[i - 1], points[i], points[(i + 1) % n]
        m_in, m_out = (prev + here) / 2, (here + nxt) / 2
        d_in, d_out = np.hypot(*(here - prev)), np.hypot(*(nxt - here))
        split = m_in + (m_out - m_in) * d_in / (d_in + d_out)
        handles_in.append(here + (1 - k) * (m_in - split))
        handles_out.append(here + (1 - k) * (m_out - split))
    out = []
    for i in range(n):
        ctrl = [points[i], handles_out[i], handles_in[(i + 1) % n], points[(i + 1) % n]]
        for t in np.arange(samples) / samples:
            level = list(ctrl)
            while len(level) > 1:
                level = [(1 - t) * a + t * b for a, b in itertools.pairwise(level)]
            out.append(level[0])
    return np.array(out)


def test_bezier_curve_matches_de_casteljau_and_passes_through_points() -> None:
    points = np.array([[10.0, 5.0], [80.0, 20.0], [70.0, 90.0], [20.0, 70.0], [5.0, 40.0]])
    for k in (0.2, 0.3, 0.4, 1.0):
        curve = closed_bezier_curve(points, k, samples_per_segment=10)
        np.testing.assert_allclose(curve, _reference_curve(points, k, 10), atol=1e-9)
        np.testing.assert_allclose(curve[::10], points, atol=1e-12)


def test_straight_segments_keep_only_their_start_vertex() -> None:
    points = np.array([[10.0, 5.0], [80.0, 20.0], [70.0, 90.0], [20.0, 70.0], [5.0, 40.0]])
    curve = closed_bezier_curve(points, 0.3, samples_per_segment=10)
    np.testing.assert_array_equal(closed_bezier_curve(points, 0.3, 10, straight=np.ones(5, bool)), points)
    straight = np.array([True, False, False, True, False])
    mixed = closed_bezier_curve(points, 0.3, 10, straight=straight)
    kept = [curve[i * 10 : i * 10 + (1 if flat else 10)] for i, flat in enumerate(straight)]
    expected = np.concatenate(kept)
    np.testing.assert_array_equal(mixed, expected)


def test_bezier_segments_are_chords_half_the_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """REB's code draws each segment as a straight chord with probability 0.5."""
    flags = []

    def recording(points: np.ndarray, k: float, samples: int, straight: np.ndarray) -> np.ndarray:
        flags.append(straight)
        return closed_bezier_curve(points, k, samples, straight)

    monkeypatch.setattr(bezier, "closed_bezier_curve", recording)
    for seed in range(200):
        bezier_mask(30, 50, np.random.default_rng(seed))
    share = np.concatenate(flags).mean()
    assert 0.45 < share < 0.55


def test_clumps_use_five_to_nine_control_points(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = []

    def recording(rng: np.random.Generator, num_points: int) -> np.ndarray:
        counts.append(num_points)
        return random_bezier_points(rng, num_points)

    monkeypatch.setattr(bezier, "random_bezier_points", recording)
    for seed in range(100):
        bezier_clump_shape((256, 256), np.random.default_rng(seed))
    assert set(counts) == {5, 6, 7, 8, 9}
    counts.clear()
    for seed in range(50):
        bezier_shape((256, 256), np.random.default_rng(seed))
    assert set(counts) == {5, 6}


def test_bezier_mask_spans_its_box() -> None:
    for seed in range(20):
        mask = bezier_mask(30, 50, np.random.default_rng(seed))
        assert mask.shape == (30, 50)
        assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()


@pytest.mark.parametrize("size", SIZES)
def test_cutpaste_box_area_and_aspect(size: tuple[int, int]) -> None:
    image_area = size[0] * size[1]
    for seed in range(200):
        height, width = cutpaste_box(size, np.random.default_rng(seed))
        assert 1 <= height <= size[0] and 1 <= width <= size[1]
        # rounding each side by half a pixel bounds the area error
        slack = (height + width) / 2 + 1
        assert 0.02 * image_area - slack <= height * width <= 0.15 * image_area + slack
        if height < size[0] and width < size[1]:
            assert 1 / 3.3 - 0.1 <= width / height <= 3.3 + 0.1


@pytest.mark.parametrize("size", SIZES)
def test_shape_area_ranges(size: tuple[int, int]) -> None:
    image_area = size[0] * size[1]
    scale = min(size) / 256
    for seed in range(100):
        blob = bezier_shape(size, np.random.default_rng(seed))
        slack = sum(blob.shape) / 2 + 1
        assert 0.02 * image_area - slack <= blob.size <= 0.15 * image_area + slack
        assert 0 < blob.sum() <= blob.size

        scar = bezier_scar_shape(size, np.random.default_rng(seed))
        longest = math.hypot(20 * scale + 1, 29 * scale + 1) + 2
        assert max(scar.shape) <= longest
        assert 0 < scar.sum() <= 1.1 * (20 * scale + 1) * (29 * scale + 1) + 4
        assert scar[0].any() and scar[-1].any() and scar[:, 0].any() and scar[:, -1].any()

        clump = bezier_clump_shape(size, np.random.default_rng(seed))
        assert 0 < clump.sum() <= 0.15 * image_area + sum(size)
        assert clump[0].any() and clump[-1].any() and clump[:, 0].any() and clump[:, -1].any()


def test_clump_is_sparser_than_blob() -> None:
    blob = np.mean([bezier_shape((256, 256), np.random.default_rng(s)).mean() for s in range(50)])
    clump = np.mean([bezier_clump_shape((256, 256), np.random.default_rng(s)).mean() for s in range(50)])
    assert clump < blob


def test_unknown_shape_and_fill_rejected() -> None:
    with pytest.raises(ValueError, match="bezier_scar"):
        make_shape("square", (64, 64), np.random.default_rng(0))
    with pytest.raises(ValueError, match="fill="):
        DefectMaker().label("bezier", "perlin")
    with pytest.raises(ValueError, match="fill="):
        DefectMaker().label("rect", "cutpaste")  # a CutPaste baseline shape, not a DefectMaker type


def test_paste_changes_only_masked_pixels() -> None:
    rng = np.random.default_rng(0)
    image = _image(1)
    fill = _image(2, 20)
    mask = rng.random((20, 20)) > 0.5
    out = fuse(image, fill, mask, (30, 40), weight=1.0)
    changed = np.zeros(image.shape[:2], bool)
    changed[30:50, 40:60] = mask
    np.testing.assert_array_equal(out[~changed], image[~changed])
    np.testing.assert_array_equal(out[30:50, 40:60][mask], fill[mask])


def test_blend_formula() -> None:
    image = np.full((4, 4, 3), 100, np.uint8)
    fill = np.full((2, 2, 3), 200, np.uint8)
    alpha = np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)
    out = fuse(image, fill, alpha, (1, 1), weight=0.8)
    expected = np.rint(0.8 * alpha * 200 + (1 - 0.8 * alpha) * 100)
    np.testing.assert_array_equal(out[1:3, 1:3, 0], expected)


def test_defects_touch_only_their_weight_map() -> None:
    maker = DefectMaker()
    image, saliency = _image(3), np.ones((96, 96), bool)
    for seed in range(10):
        for sample in maker.variants(image, saliency, np.random.default_rng(seed), _image(4), saliency):
            untouched = sample.weight == 0
            np.testing.assert_array_equal(sample.image[untouched], image[untouched])
            assert (sample.weight > 0).any() == (sample.label != 0)


@pytest.mark.parametrize(
    ("shape", "low", "high"), [("bezier", 1.0, 1.0), ("bezier_scar", 1.0, 1.0), ("bezier_clump", 0.5, 1.0)]
)
def test_blend_weight_range(shape: str, low: float, high: float) -> None:
    maker = DefectMaker(soften_prob=0.0)
    image, saliency = _image(5), np.ones((96, 96), bool)
    weights = [
        maker.make(image, saliency, shape, "noise", np.random.default_rng(seed)).weight.max()
        for seed in range(60)
    ]
    assert min(weights) >= low - 1e-6 and max(weights) <= high + 1e-6
    if low < high:
        assert max(weights) - min(weights) > 0.2  # spread over the range, not a constant


def test_soft_mask_stays_inside_and_in_range() -> None:
    mask = bezier_mask(40, 40, np.random.default_rng(0))
    for k in (3, 5):
        soft = soften_mask(mask, k)
        assert soft.dtype == np.float32 and soft.min() >= 0 and soft.max() <= 1
        assert (soft[~mask] < 0.5).all()
        assert soft.sum() < mask.sum()


def test_softening_probability() -> None:
    image, saliency = _image(6), np.ones((96, 96), bool)
    always = DefectMaker(soften_prob=1.0).make(image, saliency, "bezier", "noise", np.random.default_rng(0))
    never = DefectMaker(soften_prob=0.0).make(image, saliency, "bezier", "noise", np.random.default_rng(0))
    assert set(np.unique(never.weight)) <= {0.0, 1.0}
    assert len(np.unique(always.weight)) > 2


def test_label_mapping() -> None:
    assert CLASS_NAMES == (
        "normal",
        "bezier+cutpaste",
        "bezier_scar+cutpaste",
        "bezier_clump+cutpaste",
        "bezier+noise",
        "bezier_scar+noise",
        "bezier_clump+noise",
    )
    for label, (shape, fill) in enumerate(DEFECT_TYPES, start=1):
        assert DefectMaker().label(shape, fill) == label
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    batch, labels = defect_batch(
        images, [np.ones((64, 64), bool)] * 3, DefectMaker(), np.random.default_rng(0)
    )
    assert batch.shape == (21, 3, 64, 64) and batch.dtype == images.dtype
    assert labels.tolist() == list(range(7)) * 3
    assert batch.min() >= 0 and batch.max() <= 1


def test_determinism_under_seed() -> None:
    maker = DefectMaker()
    image, saliency = _image(7), np.ones((96, 96), bool)

    def run(seed: int) -> list:
        rng = np.random.default_rng(seed)
        base, base_saliency = maker.prepare(image, saliency, rng)
        return maker.variants(base, base_saliency, rng, _image(8), saliency)

    first, again, other = run(11), run(11), run(12)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.weight, b.weight)
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(first, other, strict=True))
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    masks = [np.ones((64, 64), bool)] * 2
    one, _ = defect_batch(images, masks, maker, np.random.default_rng(3))
    two, _ = defect_batch(images, masks, maker, np.random.default_rng(3))
    assert torch.equal(one, two)


def test_noise_fill_is_coloured() -> None:
    for seed in range(20):
        fill = noise_fill((13, 29), np.random.default_rng(seed))
        assert fill.shape == (13, 29, 3) and fill.dtype == np.uint8
    # each channel drawn on its own: only a zero fluctuation (a flat fill) gives equal channels
    assert sum(not (fill[..., :1] == fill).all() for fill in map(_noise, range(10))) >= 8


def _noise(seed: int) -> np.ndarray:
    return noise_fill((16, 16), np.random.default_rng(seed))


def test_grey_images_get_coloured_noise() -> None:
    """REB's loader converts every image to RGB, so its noise fills are coloured on grey images too."""
    grey = np.repeat(_image(9)[..., :1], 3, axis=2)
    sample = DefectMaker(jitter=0.0).make(
        grey, np.ones((96, 96), bool), "bezier", "noise", np.random.default_rng(0)
    )
    defect = sample.weight > 0
    assert not (sample.image[defect][:, :1] == sample.image[defect]).all()


def test_cutpaste_fill_centred_on_salient_pixel() -> None:
    source = _image(10)
    saliency = np.zeros((96, 96), bool)
    saliency[50, 60] = True
    patch = cutpaste_fill(source, saliency, (10, 20), np.random.default_rng(0))
    np.testing.assert_array_equal(patch, source[45:55, 50:70])


def test_box_around_clamps_to_border() -> None:
    saliency = np.zeros((50, 50), bool)
    saliency[1, 48] = True
    assert box_around(saliency, (10, 10), np.random.default_rng(0)) == (0, 40)
    with pytest.raises(ValueError, match="does not fit"):
        box_around(saliency, (60, 10), np.random.default_rng(0))


def test_defects_centred_in_saliency() -> None:
    saliency = np.zeros((96, 96), bool)
    saliency[60:70, 20:30] = True
    maker = DefectMaker()
    for seed in range(10):
        sample = maker.make(_image(11), saliency, "bezier_scar", "noise", np.random.default_rng(seed))
        rows, cols = np.nonzero(sample.weight)
        centre = ((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2)
        assert 60 - 2 <= centre[0] <= 70 + 2 and 20 - 2 <= centre[1] <= 30 + 2


def test_transposes_move_image_and_saliency_together() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    image[1, 2] = 255
    saliency = image[..., 0] > 0
    seen = set()
    for seed in range(60):
        out, out_saliency, name = random_transpose(image, saliency, np.random.default_rng(seed))
        seen.add(name)
        np.testing.assert_array_equal(out[..., 0] > 0, out_saliency)
        assert out.sum() == image.sum()
    assert seen == set(TRANSPOSES)
    wide = np.zeros((4, 6, 3), np.uint8)
    for seed in range(20):
        assert random_transpose(wide, wide[..., 0] > 0, np.random.default_rng(seed))[0].shape == wide.shape


def test_color_jitter_seeded_and_bounded() -> None:
    image = _image(12)
    a = color_jitter(image, np.random.default_rng(0))
    b = color_jitter(image, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, image)
    np.testing.assert_array_equal(color_jitter(image, np.random.default_rng(0), strength=0.0), image)
    grey = np.full((8, 8, 3), 128, np.uint8)
    brightened = color_jitter(grey, np.random.default_rng(1))
    assert np.abs(brightened.astype(int) - 128).max() <= 0.1 * 128 + 1
