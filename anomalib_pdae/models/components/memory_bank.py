"""What the memory-bank models share: one pass collecting embeddings of normal images, then a fit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.models.components import MemoryBankMixin
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Resize

from .embedding_store import EmbeddingStore
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
    ``self.model`` provides ``fit(embeddings)`` and ``check_fitted()``; with
    ``embedding_memory_bytes`` set, its ``fit`` also takes an ``EmbeddingStore`` whose rows
    partly live on disk.

    Put it after the plugin mixins and before ``AnomalibModule``, which stays a direct base
    (anomalib's ``get_model`` only sees its direct subclasses):
    ``class Ldknn(PluginDefaultsMixin, CheckpointGuard, EmbeddingBankMixin, AnomalibModule)``.
    """

    # Bytes of collected rows kept in memory; beyond it they go to a temporary file and
    # ``self.model.fit`` receives the ``EmbeddingStore`` itself. ``None``: all in memory.
    embedding_memory_bytes: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.embeddings = EmbeddingStore(self.embedding_memory_bytes)

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
        self.embeddings.append(self.model(batch.image))
        return torch.tensor(0.0, requires_grad=True, device=self.device)

    def fit(self) -> None:
        """Fit the torch model on every collected embedding."""
        name = type(self).__name__
        if not self.embeddings:
            msg = f"{name} received no training images: check the datamodule's training split."
            raise ValueError(msg)
        logger.info("Fitting %s on %d embeddings.", name, len(self.embeddings))
        fit_from_store(self.model.fit, self.embeddings, self.device)

    def setup(self, stage: str | None = None) -> None:
        """Check the datamodule's splits before the data loaders are built (see ``check_datamodule``)."""
        super().setup(stage)
        check_datamodule(self, stage)

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """One pass over the training data, no gradient clipping, no sanity validation."""
        return {"gradient_clip_val": 0, "max_epochs": 1, "num_sanity_val_steps": 0, "devices": 1}

    @property
    def learning_type(self) -> LearningType:
        """Trained on normal images only."""
        return LearningType.ONE_CLASS


def fit_from_store(fit: Callable[[Any], None], store: EmbeddingStore, device: torch.device | str) -> None:
    """``fit(rows)``: one tensor on ``device``, or the store itself when its rows went to disk.

    The store is empty afterwards.
    """
    if store.spilled:
        fit(store)
        store.clear()
    else:
        fit(store.drain().to(device))
