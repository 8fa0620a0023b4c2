"""Fusing a fill into an image through a shape: paste, blend and softened edges."""

from __future__ import annotations

import cv2
import numpy as np


def soften_mask(mask: np.ndarray, kernel_size: int) -> np.ndarray:
    """Erode ``mask`` with an elliptical ``k × k`` element, then Gaussian-blur it (``k × k``, sigma k).

    Returns a ``float32`` weight map in ``[0, 1]``; ``kernel_size`` is rounded up to an odd number.
    """
    k = int(kernel_size) // 2 * 2 + 1
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    eroded = cv2.erode(mask.astype(np.uint8) * 255, element)
    return cv2.GaussianBlur(eroded, (k, k), k).astype(np.float32) / 255.0


def fuse(
    image: np.ndarray,
    fill: np.ndarray,
    mask: np.ndarray,
    top_left: tuple[int, int],
    weight: float = 1.0,
) -> np.ndarray:
    """``out = w·m·fill + (1 − w·m)·image`` inside the box at ``top_left``; the image elsewhere.

    Args:
        image: ``uint8`` ``(H, W, C)`` image (left untouched).
        fill: ``uint8`` ``(h, w, C)`` patch.
        mask: ``(h, w)`` shape, boolean or a ``[0, 1]`` weight map.
        top_left: ``(row, column)`` of the box in ``image``.
        weight: blend weight ``w``; 1 pastes, less blends.

    Returns:
        The fused ``uint8`` image.

    Example:
        >>> image = np.zeros((4, 4, 1), np.uint8)
        >>> fuse(image, np.full((2, 2, 1), 200, np.uint8), np.ones((2, 2), bool), (1, 1))[..., 0]
        array([[  0,   0,   0,   0],
               [  0, 200, 200,   0],
               [  0, 200, 200,   0],
               [  0,   0,   0,   0]], dtype=uint8)
    """
    top, left = top_left
    height, width = mask.shape
    alpha = (mask.astype(np.float32) * weight)[..., None]
    out = image.copy()
    region = out[top : top + height, left : left + width].astype(np.float32)
    blended = alpha * fill.astype(np.float32) + (1 - alpha) * region
    out[top : top + height, left : left + width] = np.rint(blended).clip(0, 255).astype(np.uint8)
    return out
