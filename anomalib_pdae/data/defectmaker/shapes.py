"""Defect shapes of DefectMaker, CutPaste and DRAEM.

DefectMaker: Bezier blobs, thin rotated Bezier scars and clumps of Bezier-bounded blobs;
CutPaste: rectangles and rotated rectangular scars; DRAEM: Perlin-noise regions.

Every shape is a boolean mask cropped to its own extent (Perlin regions: the image size), drawn
only from the ``rng`` passed in. Sizes follow CutPaste's box (area and aspect relative to the
image) for ``bezier``, ``bezier_clump`` and ``rect``; the scars' pixel sizes are given for a
256-pixel image and scale with the image's shorter side.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from anomalib.data.utils.generators.perlin import generate_perlin_noise
from PIL import Image

from anomalib_pdae.data.defectmaker.bezier import bezier_mask

SHAPES = ("bezier", "bezier_scar", "bezier_clump", "rect", "rect_scar", "perlin")

# CutPaste box: area fraction of the image and the largest aspect ratio (sampled log-uniformly).
BOX_AREA = (0.02, 0.15)
BOX_ASPECT = 3.3
CLUMP_ASPECT = 3.0
# Scar box at a 256-pixel image: width in [7, 21), height in [15, 30), rotation in [-45°, 45°].
SCAR_WIDTH = (7, 21)
SCAR_HEIGHT = (15, 30)
SCAR_ROTATION = 45.0
REFERENCE_SIZE = 256
# Clump: uniform noise 127 ± 50 drawn at 1/5 to 1/7 of the box, upsampled, kept where > 138.
CLUMP_NOISE_MEAN = 127
CLUMP_NOISE_FLUCT = 50
CLUMP_THRESHOLD = 138
CLUMP_SCALE = (5.0, 7.0)
CLUMP_NOISE_ASPECT = 2.0
# The clump's Bezier outline: 5-9 control points (REB's BezierClumpShapeMaker; blobs use 5-6).
CLUMP_POINTS = (5, 6, 7, 8, 9)
# Perlin regions (REB's DRAEM generator): noise of 2**[0, 6) cells per side, min-max
# normalised, kept where > 0.5.
PERLIN_SCALE_EXPONENTS = (0, 6)
PERLIN_THRESHOLD = 0.5
_MAX_REDRAWS = 50


def cutpaste_box(
    image_size: tuple[int, int],
    rng: np.random.Generator,
    area: tuple[float, float] = BOX_AREA,
    aspect: float = BOX_ASPECT,
) -> tuple[int, int]:
    """``(height, width)`` of a box covering ``U(area)`` of the image, aspect log-uniform in [1/a, a].

    The box is clipped to the image (the other side then grows to keep the area where possible).
    """
    image_h, image_w = image_size
    target = rng.uniform(*area) * image_h * image_w
    ratio = math.exp(rng.uniform(-math.log(aspect), math.log(aspect)))
    width = round(math.sqrt(target * ratio))
    height = round(math.sqrt(target / ratio))
    if width > image_w:
        width, height = image_w, round(target / image_w)
    if height > image_h:
        height, width = image_h, round(target / image_h)
    return max(1, min(height, image_h)), max(1, min(width, image_w))


def bezier_shape(image_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A Bezier blob spanning a CutPaste-sized box (2–15 % of the image area)."""
    height, width = cutpaste_box(image_size, rng)
    return bezier_mask(height, width, rng)


def bezier_scar_shape(image_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A thin Bezier shape in a scar-sized box, rotated by up to ±45° and cropped to its extent."""
    height, width, angle = _scar_box(image_size, rng)
    return _rotated(bezier_mask(height, width, rng), angle)


def rect_shape(image_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """CutPaste's rectangle: a filled CutPaste-sized box (2–15 % of the image area)."""
    return np.ones(cutpaste_box(image_size, rng), dtype=bool)


def rect_scar_shape(image_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """CutPaste's scar: a filled scar-sized box rotated by up to ±45°, cropped to its extent."""
    height, width, angle = _scar_box(image_size, rng)
    return _rotated(np.ones((height, width), dtype=bool), angle)


def perlin_shape(image_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """DRAEM's Perlin region over the whole image, as REB's code draws it.

    Perlin noise (anomalib's generator) with ``2**e`` cells per side, ``e`` drawn per axis from
    :data:`PERLIN_SCALE_EXPONENTS`, min-max normalised and kept where above 0.5 — so the region
    covers about half the image. (DRAEM itself thresholds the raw noise and rotates it.)
    """
    height, width = image_size
    scale = tuple(int(2 ** rng.integers(*PERLIN_SCALE_EXPONENTS)) for _ in range(2))
    # anomalib's generator draws its gradients from torch's global generator: seed a forked one
    # from ``rng`` so the shape depends on ``rng`` alone.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**63)))
        noise = generate_perlin_noise(height, width, scale=scale).numpy()
    noise = (noise - noise.min()) / max(float(noise.max() - noise.min()), 1e-12)
    return noise > PERLIN_THRESHOLD


def bezier_clump_shape(image_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Blobs of thresholded coarse noise inside a Bezier shape, in a CutPaste-sized box.

    Redrawn (from the same ``rng``) when the blobs miss the Bezier shape entirely.
    """
    for _ in range(_MAX_REDRAWS):
        height, width = cutpaste_box(image_size, rng, aspect=CLUMP_ASPECT)
        scale = rng.uniform(*CLUMP_SCALE)
        ratio = math.exp(rng.uniform(-math.log(CLUMP_NOISE_ASPECT), math.log(CLUMP_NOISE_ASPECT)))
        grid_w = max(1, int(width / scale * ratio))
        grid_h = max(1, int(height / scale / ratio))
        low, high = CLUMP_NOISE_MEAN - CLUMP_NOISE_FLUCT, CLUMP_NOISE_MEAN + CLUMP_NOISE_FLUCT + 1
        coarse = rng.integers(low, high, size=(grid_h, grid_w)).astype(np.uint8)
        noise = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        clump = (noise > CLUMP_THRESHOLD) & bezier_mask(height, width, rng, num_points=CLUMP_POINTS)
        if clump.any():
            return _crop_to_extent(clump)
    return bezier_mask(height, width, rng, num_points=CLUMP_POINTS)  # pragma: no cover - 50 misses in a row


def make_shape(name: str, image_size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Dispatch on a shape name from :data:`SHAPES`."""
    makers = {
        "bezier": bezier_shape,
        "bezier_scar": bezier_scar_shape,
        "bezier_clump": bezier_clump_shape,
        "rect": rect_shape,
        "rect_scar": rect_scar_shape,
        "perlin": perlin_shape,
    }
    if name not in makers:
        msg = f"Unknown defect shape {name!r}; allowed: {', '.join(SHAPES)}."
        raise ValueError(msg)
    return makers[name](image_size, rng)


def _scar_box(image_size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, float]:
    """``(height, width, angle)`` of a scar: the 256-pixel sizes scaled to the image, ±45°."""
    scale = min(image_size) / REFERENCE_SIZE
    width = max(2, round(rng.integers(*SCAR_WIDTH) * scale))
    height = max(2, round(rng.integers(*SCAR_HEIGHT) * scale))
    return height, width, rng.uniform(-SCAR_ROTATION, SCAR_ROTATION)


def _rotated(mask: np.ndarray, angle: float) -> np.ndarray:
    """``mask`` turned by ``angle`` degrees (nearest neighbour, canvas grown) and cropped to its extent."""
    picture = Image.fromarray(mask.astype(np.uint8) * 255)
    return _crop_to_extent(np.asarray(picture.rotate(angle, resample=Image.NEAREST, expand=True)) > 0)


def _crop_to_extent(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
