"""What the memory-bank models share: one pass collecting embeddings of normal images, then a fit."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.models.components import MemoryBankMixin
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Resize

from .guards import check_datamodule

logger = logging.getLogger(__name__)

# REB's and PatchCore's input size.
IMAGE_SIZE = (256, 256)


class EmbeddingBankMixin(MemoryBankMixin):
    """Mixin for an ``AnomalibModule`` whose torch model ``self.model`` is fitted on embeddings.

    Training is one epoch with nothing to optimise: every batch of normal images is embedded
    (``self.model(images)`` in training mode) and kept on the CPU; anomalib's
    ``MemoryBankMixin`` then calls :meth:`fit`, which hands all of them to ``self.model.fit``.
    The pre-processor only resizes (the backbone normalises its own input); the datamodule's
    splits are checked when a stage starts; an unfitted model is refused by the torch export.
    ``self.model`` provides ``fit(embeddings)`` and ``check_fitted()``.

    Put it after the plugin mixins and before ``AnomalibModule``, which stays a direct base
    (anomalib's ``get_model`` only sees its direct subclasses):
    ``class Ldknn(PluginDefaultsMixin, CheckpointGuard, EmbeddingBankMixin, AnomalibModule)``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.embeddings: list[torch.Tensor] = []

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize to ``image_size`` (default 256×256, no centre crop). No normalisation here."""
        return PreProcessor(transform=Resize(image_size or IMAGE_SIZE, antialias=True))

    @staticmethod
    def configure_optimizers() -> None:
        """Nothing to optimise."""
        return

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Collect the embeddings of a batch of normal images."""
        del args, kwargs
        self.embeddings.append(self.model(batch.image).cpu())
        return torch.tensor(0.0, requires_grad=True, device=self.device)

    def fit(self) -> None:
        """Fit the torch model on every collected embedding."""
        name = type(self).__name__
        if not self.embeddings:
            msg = f"{name} received no training images: check the datamodule's training split."
            raise ValueError(msg)
        embeddings = drain(self.embeddings)
        logger.info("Fitting %s on %d embeddings.", name, len(embeddings))
        self.model.fit(embeddings.to(self.device))

    def setup(self, stage: str | None = None) -> None:
        """Check the datamodule's splits before the data loaders are built (see ``check_datamodule``)."""
        super().setup(stage)
        check_datamodule(self, stage)

    def to_torch(self, export_root: Path | str, model_file_name: str = "model") -> Path:
        """Export to a pickled torch model; refuses an unfitted model (it would score nothing)."""
        self.model.check_fitted()
        return super().to_torch(export_root, model_file_name)

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """One pass over the training data, no gradient clipping, no sanity validation."""
        return {"gradient_clip_val": 0, "max_epochs": 1, "num_sanity_val_steps": 0, "devices": 1}

    @property
    def learning_type(self) -> LearningType:
        """Trained on normal images only."""
        return LearningType.ONE_CLASS


def drain(batches: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate and empty ``batches`` at once, so the rows are never held twice in memory.

    Example:
        >>> batches = [torch.zeros(2, 3), torch.ones(1, 3)]
        >>> drain(batches).shape, batches
        (torch.Size([3, 3]), [])
    """
    out = batches[0].new_empty(sum(len(b) for b in batches), *batches[0].shape[1:])
    start = 0
    while batches:
        batch = batches.pop(0)
        out[start : start + len(batch)] = batch
        start += len(batch)
    return out
