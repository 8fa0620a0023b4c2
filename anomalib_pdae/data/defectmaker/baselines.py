"""The synthetic defects REB compares DefectMaker against (REB §4.6, Table 5): CutPaste and DRAEM.

Both plug into the same fine-tuning as DefectMaker (:class:`SyntheticDefects`: same base-image
jitter and flips, same classifier and schedule), so a representation differs only in its defects.
Their settings are those of the authors' code for Table 5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

from anomalib_pdae.data.defectmaker.augment import color_jitter
from anomalib_pdae.data.defectmaker.fills import FILLS
from anomalib_pdae.data.defectmaker.maker import Defect, DefectMaker, SyntheticDefects
from anomalib_pdae.data.defectmaker.placement import random_box
from anomalib_pdae.data.defectmaker.shapes import perlin_shape, rect_scar_shape, rect_shape

# The authors' fuse weights: CutPaste pastes (w in [0.99, 1]); DRAEM blends (w in [0.2, 1]).
CUTPASTE_WEIGHT = (0.99, 1.0)
DRAEM_WEIGHT = (0.2, 1.0)


class CutPasteDefects(SyntheticDefects):
    """CutPaste's 3-way task (Li et al., CVPR 2021): normal, pasted rectangle, pasted scar.

    A rectangle (2–15 % of the image, aspect up to 3.3) or a thin rotated scar is cut at a
    uniformly random place of another image of the batch (``source``), colour-jittered and pasted
    at a uniformly random place of the image, ignoring saliency.

    Example:
        >>> task = CutPasteDefects()
        >>> image = np.full((64, 64, 3), 128, np.uint8)
        >>> [s.label for s in task.variants(image, np.ones((64, 64), bool), np.random.default_rng(0))]
        [0, 1, 2]
    """

    class_names = ("normal", "rect+cutpaste", "rect_scar+cutpaste")

    def make_label(
        self,
        label: int,
        image: np.ndarray,
        saliency: np.ndarray,
        rng: np.random.Generator,
        source: np.ndarray | None = None,
        source_saliency: np.ndarray | None = None,
    ) -> Defect:
        """A rectangle (label 1) or a scar (label 2) cut from ``source`` (``image`` if ``None``)."""
        del saliency, source_saliency
        shape = {1: rect_shape, 2: rect_scar_shape}[label]
        size = image.shape[:2]
        mask = shape(size, rng)[: size[0], : size[1]]
        source = image if source is None else source
        top, left = random_box(source.shape[:2], mask.shape, rng)
        patch = source[top : top + mask.shape[0], left : left + mask.shape[1]]
        patch = color_jitter(np.ascontiguousarray(patch), rng, self.jitter)
        weight = rng.uniform(*CUTPASTE_WEIGHT)
        return Defect.fused(image, patch, mask, random_box(size, mask.shape, rng), weight, label)


class DraemDefects(SyntheticDefects):
    """DRAEM's defects (Zavrtanik et al., ICCV 2021) as REB's code makes them for Table 5.

    A Perlin-noise region over about half the image (:func:`perlin_shape`) is blended, with a
    weight drawn from ``[0.2, 1]``, with a colour-jittered texture: an image-sized crop of a
    random file of ``texture_dir`` (DRAEM and REB use the DTD texture dataset), or, without
    ``texture_dir``, another training image of the batch (``source``).

    Args:
        texture_dir: folder searched recursively for texture images, e.g. DTD's ``images/``.
        jitter: strength of the colour jitter of the base image and of each fill.
        transpose: apply a random flip/rotation to the base image (and its saliency).

    Example:
        >>> task = DraemDefects()
        >>> image = np.full((64, 64, 3), 128, np.uint8)
        >>> [s.label for s in task.variants(image, np.ones((64, 64), bool), np.random.default_rng(0))]
        [0, 1]
    """

    class_names = ("normal", "perlin+texture")

    def __init__(
        self, texture_dir: str | Path | None = None, jitter: float = 0.1, transpose: bool = True
    ) -> None:
        super().__init__(jitter=jitter, transpose=transpose)
        self.textures = texture_files(texture_dir) if texture_dir is not None else None

    def make_label(
        self,
        label: int,
        image: np.ndarray,
        saliency: np.ndarray,
        rng: np.random.Generator,
        source: np.ndarray | None = None,
        source_saliency: np.ndarray | None = None,
    ) -> Defect:
        """The Perlin defect (label 1) filled with a texture crop, or with ``source``."""
        del saliency, source_saliency
        size = image.shape[:2]
        mask = perlin_shape(size, rng)
        if self.textures is not None:
            grey = bool(np.all(image[..., :1] == image))
            fill = texture_crop(self.textures[int(rng.integers(len(self.textures)))], size, rng, grey)
        else:
            fill = image if source is None else source
        fill = color_jitter(fill, rng, self.jitter)
        return Defect.fused(image, fill, mask, (0, 0), rng.uniform(*DRAEM_WEIGHT), label)


def texture_files(folder: str | Path) -> list[Path]:
    """Every image below ``folder`` (sorted), or a clear error when there is none."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        msg = f"Texture folder not found: {folder} (DRAEM's defects use the DTD textures, e.g. dtd/images)."
        raise FileNotFoundError(msg)
    files = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        msg = f"No images ({', '.join(IMG_EXTENSIONS)}) below the texture folder {folder}."
        raise ValueError(msg)
    return files


def texture_crop(
    path: Path, size: tuple[int, int], rng: np.random.Generator, grey: bool = False
) -> np.ndarray:
    """A random ``size = (height, width)`` crop of the image at ``path`` as ``uint8`` ``(H, W, 3)``.

    Textures smaller than ``size`` are first enlarged (bicubic, aspect kept) to cover it; with
    ``grey`` the crop is converted to grey levels (repeated over the three channels).
    """
    try:
        with Image.open(path) as picture:
            texture = picture.convert("L" if grey else "RGB").convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        msg = f"Cannot read texture image {path}: {error}"
        raise ValueError(msg) from error
    factor = max(size[0] / texture.height, size[1] / texture.width)
    if factor > 1:
        covering = (max(size[1], round(texture.width * factor)), max(size[0], round(texture.height * factor)))
        texture = texture.resize(covering, Image.BICUBIC)
    array = np.asarray(texture)
    top, left = random_box(array.shape[:2], size, rng)
    return np.ascontiguousarray(array[top : top + size[0], left : left + size[1]])


# DefectMaker with both fills, with one fill only (REB Table 5's ablations), CutPaste, DRAEM.
DEFECT_TASKS = ("defectmaker", "defectmaker_cutpaste", "defectmaker_noise", "cutpaste", "draem")


def defect_task(
    name: str,
    jitter: float = 0.1,
    soften_prob: float = 0.5,
    texture_dir: str | Path | None = None,
) -> SyntheticDefects:
    """The task named ``name`` from :data:`DEFECT_TASKS`.

    ``defectmaker_<fill>`` is DefectMaker with that fill only. ``soften_prob`` is DefectMaker's
    only; ``texture_dir`` is DRAEM's only (an error elsewhere).

    Example:
        >>> defect_task("cutpaste").num_classes
        3
    """
    if name not in DEFECT_TASKS:
        msg = f"defects must be one of {', '.join(map(repr, DEFECT_TASKS))}; got {name!r}."
        raise ValueError(msg)
    if texture_dir is not None and name != "draem":
        msg = f"texture_dir is only used by defects='draem'; got defects={name!r}."
        raise ValueError(msg)
    if name == "cutpaste":
        return CutPasteDefects(jitter=jitter)
    if name == "draem":
        return DraemDefects(texture_dir=texture_dir, jitter=jitter)
    fills = (name.removeprefix("defectmaker_"),) if name.startswith("defectmaker_") else FILLS
    return DefectMaker(jitter=jitter, soften_prob=soften_prob, fills=fills)
