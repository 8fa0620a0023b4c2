"""What the memory-bank models share: one pass collecting embeddings of normal images, then a fit."""

from __future__ import annotations

import logging
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
        self.embeddings = EmbeddingStore()

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
        embeddings = self.embeddings.drain()
        logger.info("Fitting %s on %d embeddings.", name, len(embeddings))
        self.model.fit(embeddings.to(self.device))

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


# Bytes per block of stored rows. glibc serves an allocation above 32 MB (the ceiling of its
# dynamic mmap threshold) from its own mapping and unmaps it when freed. Per-batch tensors
# (17 MB for 8 images at 256 px) come from the heap instead, which keeps their pages after the
# rows are concatenated: the fit then held the embeddings twice (+450 MB on KolektorSDD).
BLOCK_BYTES = 64 * 2**20


class EmbeddingStore:
    """Rows appended batch by batch into large blocks, handed over once as one tensor.

    Holding the rows costs their size plus at most one block, and :meth:`drain` returns the
    blocks' memory to the system as it concatenates them, so the fit never holds them twice.

    Example:
        >>> store = EmbeddingStore()
        >>> store.append(torch.zeros(2, 3))
        >>> store.append(torch.ones(1, 3))
        >>> len(store), store.drain().sum().item(), len(store)
        (3, 3.0, 0)
    """

    def __init__(self) -> None:
        self._blocks: list[torch.Tensor] = []
        self._last_rows = 0  # rows filled in the last block

    def __len__(self) -> int:
        """Rows stored."""
        return sum(len(block) for block in self._blocks[:-1]) + self._last_rows

    def append(self, rows: torch.Tensor) -> None:
        """Copy ``rows`` (any shape; stored along dim 0) to the CPU store."""
        rows = rows.detach()
        while len(rows):
            if not self._blocks or self._last_rows == len(self._blocks[-1]):
                per_block = max(1, BLOCK_BYTES // max(1, rows[0].numel() * rows.element_size()))
                self._blocks.append(torch.empty(per_block, *rows.shape[1:], dtype=rows.dtype))
                self._last_rows = 0
            block = self._blocks[-1]
            count = min(len(rows), len(block) - self._last_rows)
            block[self._last_rows : self._last_rows + count] = rows[:count]
            self._last_rows += count
            rows = rows[count:]

    def clear(self) -> None:
        """Forget every row."""
        self._blocks.clear()
        self._last_rows = 0

    def drain(self) -> torch.Tensor:
        """All rows as one tensor; the store is empty afterwards."""
        if not self._blocks:
            msg = "The embedding store is empty."
            raise ValueError(msg)
        out = self._blocks[0].new_empty(len(self), *self._blocks[0].shape[1:])
        start = 0
        while self._blocks:
            block = self._blocks.pop(0)
            count = len(block) if self._blocks else self._last_rows
            out[start : start + count] = block[:count]
            start += count
            del block
        self._last_rows = 0
        return out
