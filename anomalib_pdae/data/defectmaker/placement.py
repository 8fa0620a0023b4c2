"""Where a defect goes: a box centred on a random salient pixel, or anywhere, inside the image."""

from __future__ import annotations

import numpy as np


def box_around(saliency: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a ``size = (height, width)`` box centred on a random salient pixel.

    The box is clamped to the image border. An empty saliency map counts as the whole image.

    Example:
        >>> box_around(np.ones((10, 10), bool), (4, 4), np.random.default_rng(0))
        (6, 3)
    """
    image_h, image_w = saliency.shape
    height, width = size
    if height > image_h or width > image_w:
        msg = f"Box {size} does not fit in an image of size {saliency.shape}."
        raise ValueError(msg)
    candidates = np.flatnonzero(saliency)
    index = int(rng.choice(candidates)) if candidates.size else int(rng.integers(saliency.size))
    row, col = divmod(index, image_w)
    top = min(max(row - height // 2, 0), image_h - height)
    left = min(max(col - width // 2, 0), image_w - width)
    return top, left


def random_box(
    image_size: tuple[int, int], size: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int]:
    """Top-left corner of a ``size = (height, width)`` box placed uniformly inside the image.

    Example:
        >>> random_box((10, 10), (10, 4), np.random.default_rng(0))
        (0, 5)
    """
    if size[0] > image_size[0] or size[1] > image_size[1]:
        msg = f"Box {size} does not fit in an image of size {image_size}."
        raise ValueError(msg)
    return int(rng.integers(image_size[0] - size[0] + 1)), int(rng.integers(image_size[1] - size[1] + 1))
