"""Images with more than 8 bits per channel, which anomalib's own reader saturates.

anomalib 2.7 reads every image with ``PIL.Image.open(path).convert("RGB")``. For a 16-bit
greyscale PNG or TIFF (PIL mode ``I;16``) that conversion clips each value to 255 instead of
rescaling it, so almost every pixel becomes white. Grey (``L``), ``RGBA`` and palette images are
fine. :func:`convert_to_8bit` writes an 8-bit copy of a dataset folder that anomalib's
datamodules (``MVTecAD``, ``Folder``) then read correctly; :func:`read_image` reads any of these
images as a ``[0, 1]`` RGB tensor, scaling by the bit depth.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# PIL modes holding 16-bit integer pixels ("I" is how some readers open 16-bit greyscale files).
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".pgm", ".ppm", ".webp")


def to_8bit_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB version of ``image``; 16-bit values are scaled by 255 / 65535 (not clipped)."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        if values.min() < 0 or values.max() > 65535:
            msg = f"{image.mode} image has values outside the 16-bit range [0, 65535]."
            raise ValueError(msg)
        image = Image.fromarray(np.rint(values * (255 / 65535)).astype(np.uint8))
    return image.convert("RGB")


def read_image(path: str | Path) -> torch.Tensor:
    """Read an image of any bit depth as a float ``(3, H, W)`` RGB tensor in ``[0, 1]``.

    Example:
        >>> import numpy as np
        >>> from PIL import Image
        >>> Image.fromarray(np.full((2, 2), 65535, np.uint16)).save("white16.png")
        >>> read_image("white16.png")[:, 0, 0]
        tensor([1., 1., 1.])
    """
    with Image.open(path) as image:
        rgb = np.asarray(to_8bit_rgb(image), dtype=np.float32) / 255
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def convert_to_8bit(source: str | Path, destination: str | Path) -> int:
    """Copy the folder tree ``source`` to ``destination`` with every 16-bit image made 8-bit.

    16-bit images are rescaled (value × 255 / 65535) and keep their file name; every other file,
    8-bit masks included, is copied unchanged. Returns the number of images converted.

    Example:
        >>> convert_to_8bit("datasets/parts16", "datasets/parts8")  # doctest: +SKIP
        >>> MVTecAD(root="datasets/parts8", category="screws")  # doctest: +SKIP
    """
    source, destination = Path(source), Path(destination)
    if not source.is_dir():
        msg = f"Dataset folder not found: {source}"
        raise FileNotFoundError(msg)
    converted = 0
    for path in sorted(source.rglob("*")):
        target = destination / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            with Image.open(path) as image:
                if image.mode in SIXTEEN_BIT_MODES:
                    to_8bit_rgb(image).save(target)
                    converted += 1
                    continue
        shutil.copy2(path, target)
    return converted
