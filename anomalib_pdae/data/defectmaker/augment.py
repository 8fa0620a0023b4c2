"""Seeded colour jitter and the eight flips/rotations of a square, applied to image and saliency."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from torchvision.transforms import functional as tvf


def _transverse(array: np.ndarray) -> np.ndarray:
    return np.rot90(np.swapaxes(array, 0, 1), 2)


# The dihedral group of the square, as PIL names them; the last four keep a non-square shape.
TRANSPOSES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "rotate_90": lambda a: np.rot90(a, 1),
    "rotate_270": lambda a: np.rot90(a, 3),
    "transpose": lambda a: np.swapaxes(a, 0, 1),
    "transverse": _transverse,
    "identity": lambda a: a,
    "rotate_180": lambda a: np.rot90(a, 2),
    "flip_left_right": lambda a: a[:, ::-1],
    "flip_top_bottom": lambda a: a[::-1],
}
SHAPE_KEEPING = ("identity", "rotate_180", "flip_left_right", "flip_top_bottom")


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.1) -> np.ndarray:
    """Seeded ``torchvision`` ``ColorJitter(s, s, s, s)``: factors and order drawn from ``rng``.

    Brightness, contrast and saturation factors are ``U(1 - s, 1 + s)``, the hue shift
    ``U(-s, s)``; the four adjustments run in a random order, as torchvision does.

    Example:
        >>> image = np.full((4, 4, 3), 100, np.uint8)
        >>> color_jitter(image, np.random.default_rng(0)).shape
        (4, 4, 3)
    """
    if strength <= 0:
        return image
    low, high = max(0.0, 1 - strength), 1 + strength
    factors = {
        "brightness": rng.uniform(low, high),
        "contrast": rng.uniform(low, high),
        "saturation": rng.uniform(low, high),
        "hue": rng.uniform(-min(strength, 0.5), min(strength, 0.5)),
    }
    adjust = {
        "brightness": tvf.adjust_brightness,
        "contrast": tvf.adjust_contrast,
        "saturation": tvf.adjust_saturation,
        "hue": tvf.adjust_hue,
    }
    picture = Image.fromarray(image)
    for name in np.array(list(adjust))[rng.permutation(len(adjust))]:
        picture = adjust[name](picture, factors[name])
    return np.asarray(picture)


def random_transpose(
    image: np.ndarray,
    saliency: np.ndarray,
    rng: np.random.Generator,
    keep_shape: bool = False,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Apply one random flip/rotation (uniform over the eight) to the image and its saliency.

    With ``keep_shape`` (or a non-square image) only the four that keep height and width are used.

    Returns:
        The transposed image and saliency (contiguous copies) and the transpose's name.
    """
    square = image.shape[0] == image.shape[1]
    names = list(TRANSPOSES) if square and not keep_shape else list(SHAPE_KEEPING)
    name = names[int(rng.integers(len(names)))]
    apply = TRANSPOSES[name]
    return np.ascontiguousarray(apply(image)), np.ascontiguousarray(apply(saliency)), name
