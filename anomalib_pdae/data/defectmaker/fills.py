"""Defect fills: coarse uniform noise, or a patch cut from another normal image."""

from __future__ import annotations

import cv2
import numpy as np

from anomalib_pdae.data.defectmaker.placement import box_around

FILLS = ("cutpaste", "noise")

NOISE_MEANS = tuple(range(50, 200, 10))
NOISE_FLUCTUATIONS = tuple(range(0, 50, 5))
NOISE_DOWNSCALES = (1, 2, 4)
NOISE_ASPECTS = (0.25, 0.5, 1.0, 2.0, 4.0)


def noise_fill(
    size: tuple[int, int],
    rng: np.random.Generator,
    channels: int = 3,
) -> np.ndarray:
    """A ``size = (height, width)`` patch of uniform noise, mean ± fluctuation, generated coarse.

    Mean, fluctuation, downscale and aspect are drawn from :data:`NOISE_MEANS`,
    :data:`NOISE_FLUCTUATIONS`, :data:`NOISE_DOWNSCALES` and :data:`NOISE_ASPECTS`; the noise is
    drawn at ``1/downscale`` of the patch (stretched by the aspect) and resized up bicubically.

    Args:
        size: ``(height, width)`` of the patch.
        rng: source of randomness.
        channels: channels of the result, each drawn independently (coloured noise on RGB
            images, grey-level ones included: REB's loader converts every image to RGB).

    Returns:
        ``uint8`` array ``(height, width, channels)``.

    Example:
        >>> noise_fill((8, 12), np.random.default_rng(0)).shape
        (8, 12, 3)
    """
    height, width = size
    mean = int(rng.choice(NOISE_MEANS))
    fluct = int(rng.choice(NOISE_FLUCTUATIONS))
    downscale = int(rng.choice(NOISE_DOWNSCALES))
    aspect = float(rng.choice(NOISE_ASPECTS))
    grid = (max(1, int(height / downscale / aspect)), max(1, int(width / downscale * aspect)))
    low, high = max(mean - fluct, 0), min(mean + fluct + 1, 256)
    coarse = rng.integers(low, high, size=(*grid, channels)).astype(np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).reshape(height, width, channels)


def cutpaste_fill(
    source: np.ndarray,
    source_saliency: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    """A ``size = (height, width)`` patch of ``source`` centred on a random salient pixel of it.

    The patch is shifted to stay inside the image; ``size`` must not exceed the image.
    """
    top, left = box_around(source_saliency, size, rng)
    return source[top : top + size[0], left : left + size[1]].copy()
