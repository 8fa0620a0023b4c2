"""Where defects may go: user masks when present, else a foreground estimate or the whole image.

The published method reads masks of an external salient-object model from disk and crashes
without them. Here no external model is needed and missing masks never fail:

1. A user mask, when one exists: for a training image ``<category>/train/good/000.png`` the
   masks are looked up as ``<saliency_dir>/good/000.png`` then ``<saliency_dir>/000.png``
   (any common image suffix), where ``saliency_dir`` defaults to ``<category>/saliency`` (a
   folder anomalib's ``MVTecAD`` ignores). Non-zero pixels are salient.
2. Otherwise, in ``"foreground"`` mode, a foreground estimate computed from the image itself
   (see :func:`estimate_foreground`); textures and scenes without a clear object fall back to
   the whole image.
3. Otherwise (``"image"`` mode, the authors' choice for textures) the whole image.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

SALIENCY_MODES = ("foreground", "image")
MASK_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")

# Foreground estimate parameters (fractions are of the shorter side of the working image).
_WORK_SIZE = 128
_BORDER = 0.05
_BLUR_SIGMA = 2.0
_MIN_CONTRAST = 20.0
_SPREAD_FACTOR = 2.0
_MORPH = 0.03
_COVERAGE = (0.05, 0.95)


def estimate_foreground(image: np.ndarray) -> np.ndarray | None:
    """Estimate the object of an object-on-background image, or ``None`` when there is none.

    The rule, on a copy shrunk to at most 128 pixels and blurred (sigma 2):

    * background colour = per-channel median of a border strip 5 % of the shorter side wide;
    * distance of every pixel's colour to it; the border's own spread is its 95th percentile;
    * foreground = distance above ``max(Otsu threshold, 2 × border spread, 20 grey levels)``,
      cleaned with an opening and a closing (ellipse, 3 % of the side) and with holes filled;
    * accepted only if it covers 5–95 % of the image; otherwise ``None`` (textures, scenes with
      no object distinct from the border).

    Args:
        image: ``uint8`` image ``(H, W)`` or ``(H, W, C)``.

    Returns:
        Boolean ``(H, W)`` mask, or ``None``.

    Example:
        >>> image = np.zeros((64, 64, 3), np.uint8)
        >>> image[16:48, 16:48] = 200
        >>> mask = estimate_foreground(image)
        >>> bool(mask[32, 32]), bool(mask[2, 2])
        (True, False)
    """
    height, width = image.shape[:2]
    scale = min(1.0, _WORK_SIZE / max(height, width))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA).astype(np.float32)
    small = cv2.GaussianBlur(small, (0, 0), _BLUR_SIGMA).reshape(small_size[1], small_size[0], -1)
    side = min(small.shape[:2])
    strip = max(2, round(_BORDER * side))
    border = np.ones(small.shape[:2], dtype=bool)
    border[strip:-strip, strip:-strip] = False
    background = np.median(small[border], axis=0)
    distance = np.linalg.norm(small - background, axis=2)
    spread = float(np.percentile(distance[border], 95))
    scaled = np.clip(distance, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    threshold = max(float(otsu), _SPREAD_FACTOR * spread, _MIN_CONTRAST)
    foreground = (distance > threshold).astype(np.uint8)
    size = max(3, round(_MORPH * side) // 2 * 2 + 1)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, element)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_CLOSE, element)
    foreground = _fill_holes(foreground.astype(bool))
    coverage = foreground.mean()
    if not _COVERAGE[0] <= coverage <= _COVERAGE[1]:
        return None
    return cv2.resize(foreground.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0


def find_saliency_mask(image_path: str | Path, saliency_dir: str | Path | None = None) -> Path | None:
    """The user-supplied mask file of a training image, or ``None`` when there is none."""
    path = Path(image_path)
    folder = Path(saliency_dir) if saliency_dir is not None else _default_saliency_dir(path)
    if folder is None:
        return None
    for base in (folder / path.parent.name, folder):
        for suffix in MASK_SUFFIXES:
            candidate = base / f"{path.stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def load_saliency_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray | None:
    """Read a mask file as a boolean ``size = (height, width)`` map; ``None`` if unreadable or empty."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        logger.warning("Could not read saliency mask %s; using the fallback.", path)
        return None
    mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0
    if not mask.any():
        logger.warning("Saliency mask %s is empty; using the fallback.", path)
        return None
    return mask


class Saliency:
    """Salient region of each training image, following the module's fallback order.

    Args:
        mode: ``"foreground"`` (estimate the object, whole image when there is none) or
            ``"image"`` (whole image) for images without a user mask.
        saliency_dir: folder of user masks; ``None`` looks in ``<category>/saliency``.

    Example:
        >>> saliency = Saliency("image")
        >>> bool(saliency(np.zeros((8, 8, 3), np.uint8)).all())
        True
    """

    def __init__(self, mode: str = "foreground", saliency_dir: str | Path | None = None) -> None:
        if mode not in SALIENCY_MODES:
            msg = f"saliency must be one of {', '.join(SALIENCY_MODES)}; got {mode!r}."
            raise ValueError(msg)
        self.mode = mode
        self.saliency_dir = saliency_dir

    def __call__(self, image: np.ndarray, image_path: str | Path | None = None) -> np.ndarray:
        """Boolean ``(H, W)`` map of where defects may be centred; never empty."""
        size = image.shape[:2]
        if image_path is not None:
            found = find_saliency_mask(image_path, self.saliency_dir)
            mask = load_saliency_mask(found, size) if found is not None else None
            if mask is not None:
                return mask
        if self.mode == "foreground":
            estimate = estimate_foreground(image)
            if estimate is not None:
                return estimate
        return np.ones(size, dtype=bool)


def _default_saliency_dir(image_path: Path) -> Path | None:
    parents = image_path.parents
    return parents[2] / "saliency" if len(parents) > 2 else None


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background components that do not touch the border become foreground."""
    _, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    outside = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return mask | (~np.isin(labels, outside) & ~mask)
