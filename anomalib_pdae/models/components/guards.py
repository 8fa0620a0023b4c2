"""Clear answers to common mistakes: another model's checkpoint, no training images, wrong weights."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from anomalib.utils.serialization import anomalib_safe_globals
from PIL import Image

MODEL_KEY = "anomalib_pdae_model"


class CheckpointGuard:
    """Mixin for an ``AnomalibModule``: its checkpoints name the model class that wrote them.

    Loading one model's checkpoint as another (``Pdae.load_from_checkpoint(ldknn_ckpt)``,
    ``engine.test(Reb(), ckpt_path=ldknn_ckpt)``) then fails with one sentence naming both
    models, instead of a constructor ``TypeError`` or a page of missing state-dict keys.

    Example:
        >>> from anomalib.models.components import AnomalibModule
        >>> class MyModel(CheckpointGuard, AnomalibModule): ...
    """

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the model class beside anomalib's own entries."""
        super().on_save_checkpoint(checkpoint)
        checkpoint[MODEL_KEY] = type(self).__name__

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint another model class wrote (before its weights are loaded)."""
        _check_owner(type(self).__name__, checkpoint.get(MODEL_KEY))
        super().on_load_checkpoint(checkpoint)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, *args: Any, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint``, naming the writer when the arguments do not fit."""
        try:
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)
        except (TypeError, ValueError, RuntimeError):  # e.g. the other model's arguments do not fit
            with anomalib_safe_globals(extra=cls.checkpoint_safe_globals()):
                checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
            _check_owner(cls.__name__, checkpoint.get(MODEL_KEY))
            raise


def _check_owner(expected: str, owner: str | None) -> None:
    if owner is None or owner == expected:
        return  # written by this class, or before checkpoints named their model
    msg = (
        f"This checkpoint was written by {owner}, not {expected}: load it with "
        f"{owner}.load_from_checkpoint(...) or `--model {owner}`."
    )
    raise ValueError(msg)


def check_datamodule(model: Any, stage: str | None) -> None:
    """When a stage starts: refuse an empty training split; warn of a split with only normal images.

    With no anomalous image, image and pixel AUROC / F1 are undefined: torchmetrics returns 0
    with a note about "positive samples", which reads like a failed model. The warning says why.
    """
    trainer = getattr(model, "_trainer", None)
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    if datamodule is None:
        return
    if stage == "fit":
        _require_training_images(model, datamodule)
    split = {"fit": "val_data", "validate": "val_data", "test": "test_data"}.get(stage or "")
    samples = getattr(getattr(datamodule, split, None), "samples", None) if split else None
    if samples is None or not len(samples):
        return
    name = f"The {split.removesuffix('_data')} split of {type(datamodule).__name__} ({_where(datamodule)})"
    if "label_index" in samples and samples.label_index.max() == 0:
        warnings.warn(
            f"{name} holds only normal images: image and pixel AUROC and F1 are undefined on it "
            "(torchmetrics reports 0). Add anomalous images to evaluate the model.",
            UserWarning,
            stacklevel=2,
        )
    mismatched = _masks_of_another_size(samples)
    if mismatched:
        warnings.warn(
            f"{name}: {len(mismatched)} mask(s) differ in size from their image, e.g. "
            f"{'; '.join(mismatched[:3])}. They are resized to the image (stretched if the aspect "
            "ratio differs): check that each mask belongs to its image.",
            UserWarning,
            stacklevel=2,
        )


def _masks_of_another_size(samples: Any) -> list[str]:
    """``"mask (w×h) for image (w×h)"`` for each mask whose size differs (file headers only)."""
    if "mask_path" not in samples or "image_path" not in samples:
        return []
    found = []
    for image_path, mask_path in zip(samples.image_path, samples.mask_path, strict=True):
        if not isinstance(mask_path, str) or not mask_path or not Path(mask_path).is_file():
            continue
        with Image.open(image_path) as image, Image.open(mask_path) as mask:
            if image.size != mask.size:
                (mask_w, mask_h), (image_w, image_h) = mask.size, image.size
                found.append(f"{mask_path} ({mask_w}×{mask_h}) for {image_w}×{image_h}")
    return found


def _require_training_images(model: Any, datamodule: Any) -> None:
    train_data = getattr(datamodule, "train_data", None)
    if train_data is None or len(train_data) > 0:
        return
    msg = (
        f"{type(model).__name__} received no training images: {type(datamodule).__name__}'s training "
        f"split is empty (dataset at {_where(datamodule)}). It needs normal training images."
    )
    raise ValueError(msg)


def _where(datamodule: Any) -> Any:
    where = getattr(datamodule, "root", None)
    category = getattr(datamodule, "category", None)
    return Path(where) / category if where is not None and category is not None else where
