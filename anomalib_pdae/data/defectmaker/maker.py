"""DefectMaker: six synthetic defect types (3 shapes × 2 fills) plus "normal", as 7 classes.

:class:`SyntheticDefects` is the task interface it shares with the CutPaste and DRAEM baselines
(:mod:`anomalib_pdae.data.defectmaker.baselines`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from anomalib_pdae.data.defectmaker.augment import color_jitter, random_transpose
from anomalib_pdae.data.defectmaker.fills import FILLS, cutpaste_fill, noise_fill
from anomalib_pdae.data.defectmaker.fusing import fuse, soften_mask
from anomalib_pdae.data.defectmaker.placement import box_around
from anomalib_pdae.data.defectmaker.shapes import make_shape

# Class labels of the self-supervised task: 0 is the untouched image, 1-6 the defect types.
DEFECT_TYPES: tuple[tuple[str, str], ...] = (
    ("bezier", "cutpaste"),
    ("bezier_scar", "cutpaste"),
    ("bezier_clump", "cutpaste"),
    ("bezier", "noise"),
    ("bezier_scar", "noise"),
    ("bezier_clump", "noise"),
)
CLASS_NAMES: tuple[str, ...] = ("normal", *(f"{shape}+{fill}" for shape, fill in DEFECT_TYPES))
NUM_CLASSES = len(CLASS_NAMES)

SOFTEN_KERNEL = {"bezier": 5, "bezier_scar": 3, "bezier_clump": 3}
BLEND_WEIGHT = {"bezier": (1.0, 1.0), "bezier_scar": (1.0, 1.0), "bezier_clump": (0.5, 1.0)}


@dataclass
class Defect:
    """One synthetic sample: the image, the per-pixel defect weight ``w·m`` and its class label.

    Example:
        >>> sample = Defect(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32), 0)
        >>> CLASS_NAMES[sample.label]
        'normal'
    """

    image: np.ndarray
    weight: np.ndarray
    label: int

    @classmethod
    def fused(
        cls,
        image: np.ndarray,
        fill: np.ndarray,
        alpha: np.ndarray,
        top_left: tuple[int, int],
        weight: float,
        label: int,
    ) -> Defect:
        """``fill`` fused into ``image`` through ``alpha`` at ``top_left`` (:func:`fuse`), with its map."""
        full = np.zeros(image.shape[:2], dtype=np.float32)
        top, left = top_left
        full[top : top + alpha.shape[0], left : left + alpha.shape[1]] = alpha * weight
        return cls(fuse(image, fill, alpha, top_left, weight), full, label)


class SyntheticDefects:
    """A self-supervised task over synthetic defects: label 0 is the image, 1.. the defect types.

    What every task shares: the base image is prepared (colour jitter, one random flip/rotation
    of image and saliency) and expanded into its untouched self plus one defect of each type.
    Subclasses name their classes in ``class_names`` and make one defect per label in
    :meth:`make_label`, so REB's representations differ only in how defects are made (REB §4.6).

    Args:
        jitter: strength of the colour jitter of the base image and of each fill.
        transpose: apply a random flip/rotation to the base image (and its saliency).
    """

    class_names: tuple[str, ...] = ("normal",)

    def __init__(self, jitter: float = 0.1, transpose: bool = True) -> None:
        if jitter < 0:
            msg = f"jitter must be >= 0; got {jitter}."
            raise ValueError(msg)
        self.jitter = jitter
        self.transpose = transpose

    @property
    def num_classes(self) -> int:
        """Classes of the task, the untouched image included."""
        return len(self.class_names)

    def prepare(
        self,
        image: np.ndarray,
        saliency: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Base image for the variants: colour jitter, then one flip/rotation of image and saliency."""
        image = color_jitter(image, rng, self.jitter)
        if self.transpose:
            image, saliency, _ = random_transpose(image, saliency, rng)
        return image, saliency

    def make_label(
        self,
        label: int,
        image: np.ndarray,
        saliency: np.ndarray,
        rng: np.random.Generator,
        source: np.ndarray | None = None,
        source_saliency: np.ndarray | None = None,
    ) -> Defect:
        """One defect of class ``label`` (1 .. ``num_classes - 1``) fused into ``image``."""
        raise NotImplementedError

    def variants(
        self,
        image: np.ndarray,
        saliency: np.ndarray,
        rng: np.random.Generator,
        source: np.ndarray | None = None,
        source_saliency: np.ndarray | None = None,
    ) -> list[Defect]:
        """The untouched ``image`` (label 0) and one defect of each type (labels 1, 2, ...)."""
        normal = Defect(image, np.zeros(image.shape[:2], dtype=np.float32), 0)
        return [normal] + [
            self.make_label(label, image, saliency, rng, source, source_saliency)
            for label in range(1, self.num_classes)
        ]


class DefectMaker(SyntheticDefects):
    """Generates the seven self-supervised variants of a normal image (REB §3.1).

    Every random choice comes from the ``numpy.random.Generator`` passed to each call, so the
    same seed reproduces the same defects exactly. With one fill only (REB Table 5's ablations)
    the task has the three shapes with that fill: 4 classes.

    Args:
        jitter: strength of the colour jitter of the base image and of each fill.
        soften_prob: probability of softening a mask's edge (erode + blur).
        transpose: apply a random flip/rotation to the base image (and its saliency).
        fills: the fills used, from :data:`FILLS`.

    Example:
        >>> maker = DefectMaker()
        >>> image = np.full((64, 64, 3), 128, np.uint8)
        >>> saliency = np.ones((64, 64), bool)
        >>> samples = maker.variants(image, saliency, np.random.default_rng(0))
        >>> [s.label for s in samples]
        [0, 1, 2, 3, 4, 5, 6]
    """

    def __init__(
        self,
        jitter: float = 0.1,
        soften_prob: float = 0.5,
        transpose: bool = True,
        fills: Sequence[str] = FILLS,
    ) -> None:
        super().__init__(jitter=jitter, transpose=transpose)
        if not 0 <= soften_prob <= 1:
            msg = f"soften_prob must be in [0, 1]; got {soften_prob}."
            raise ValueError(msg)
        if not fills or not set(fills) <= set(FILLS):
            msg = f"fills must be a non-empty subset of {FILLS}; got {tuple(fills)}."
            raise ValueError(msg)
        self.soften_prob = soften_prob
        self.types = tuple(kind for kind in DEFECT_TYPES if kind[1] in fills)
        self.class_names = ("normal", *(f"{shape}+{fill}" for shape, fill in self.types))

    def label(self, shape: str, fill: str) -> int:
        """Class label of a shape and fill: 1-6 with both fills (see :data:`CLASS_NAMES`)."""
        if (shape, fill) not in self.types:
            msg = f"Unknown defect type shape={shape!r}, fill={fill!r}; types (shape, fill): {self.types}."
            raise ValueError(msg)
        return self.types.index((shape, fill)) + 1

    def make_label(
        self,
        label: int,
        image: np.ndarray,
        saliency: np.ndarray,
        rng: np.random.Generator,
        source: np.ndarray | None = None,
        source_saliency: np.ndarray | None = None,
    ) -> Defect:
        """The defect of class ``label``: the shape and fill of ``types[label - 1]``."""
        shape, fill = self.types[label - 1]
        return self.make(image, saliency, shape, fill, rng, source, source_saliency)

    def make(
        self,
        image: np.ndarray,
        saliency: np.ndarray,
        shape: str,
        fill: str,
        rng: np.random.Generator,
        source: np.ndarray | None = None,
        source_saliency: np.ndarray | None = None,
    ) -> Defect:
        """Fuse one defect of the given shape and fill into ``image`` (``uint8``, ``H×W×C``).

        The defect is centred on a random pixel of ``saliency``; a cut-paste fill is cut around
        a random salient pixel of ``source`` (another normal image; ``image`` itself if ``None``).
        """
        label = self.label(shape, fill)
        height, width = image.shape[:2]
        mask = make_shape(shape, (height, width), rng)[:height, :width]
        top_left = box_around(saliency, mask.shape, rng)
        if fill == "cutpaste":
            if source is None:
                source, source_saliency = image, saliency
            if source_saliency is None:
                source_saliency = np.ones(source.shape[:2], dtype=bool)
            patch = cutpaste_fill(source, source_saliency, mask.shape, rng)
        else:
            patch = noise_fill(mask.shape, rng, channels=image.shape[2])
        patch = color_jitter(patch, rng, self.jitter)
        alpha = mask
        if rng.random() < self.soften_prob:
            soft = soften_mask(mask, SOFTEN_KERNEL[shape])
            # a shape thinner than the kernel erodes away: keep it hard rather than lose the defect
            alpha = soft if soft.max() > 0 else mask
        weight = rng.uniform(*BLEND_WEIGHT[shape])
        return Defect.fused(image, patch, alpha, top_left, weight, label)


def defect_batch(
    images: torch.Tensor,
    saliencies: Sequence[np.ndarray],
    maker: SyntheticDefects,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The variants of every image of a batch (7 with DefectMaker), for the self-supervised task.

    Each image is prepared (jitter, flip/rotation) and its cut-paste fills are cut from another
    prepared image of the same batch (itself when the batch holds one image).

    Args:
        images: ``(B, C, H, W)`` images in ``[0, 1]``.
        saliencies: ``B`` boolean ``(H, W)`` saliency maps.
        maker: the defect task (:class:`DefectMaker`, or a baseline of :mod:`.baselines`).
        rng: source of randomness.

    Returns:
        ``(n·B, C, H, W)`` images in ``[0, 1]`` (image by image, labels 0 .. n-1 each, n =
        ``maker.num_classes``) and the ``(n·B,)`` labels.
    """
    arrays = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    bases = [maker.prepare(array, saliency, rng) for array, saliency in zip(arrays, saliencies, strict=True)]
    samples: list[Defect] = []
    for index, (image, saliency) in enumerate(bases):
        others = [j for j in range(len(bases)) if j != index] or [index]
        source, source_saliency = bases[int(rng.choice(others))]
        samples += maker.variants(image, saliency, rng, source, source_saliency)
    stacked = torch.from_numpy(np.stack([sample.image for sample in samples])).permute(0, 3, 1, 2)
    labels = torch.tensor([sample.label for sample in samples], dtype=torch.long)
    return stacked.to(images.device, images.dtype) / 255.0, labels.to(images.device)
