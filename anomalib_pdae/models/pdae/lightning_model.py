"""PDAE as an anomalib model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT, OptimizerLRSchedulerConfig
from PIL import Image
from torch import optim
from torchvision.transforms.v2 import Compose, Resize

from anomalib_pdae.data.cutpaste import CutPaste
from anomalib_pdae.models.components.defaults import PluginDefaultsMixin
from anomalib_pdae.models.components.guards import CheckpointGuard, check_datamodule

from .autoencoder import AUTHORS_WIDTHS
from .loss import PdaeLoss
from .torch_model import DEFAULT_BACKBONES, PdaeModel

__all__ = ["Pdae"]

MVTEC_MILESTONES = (30, 60, 90, 120, 140, 160, 180, 210)


class Pdae(PluginDefaultsMixin, CheckpointGuard, AnomalibModule):
    """Patch distance auto-encoder (Ma, Li, Wong, ESWA 2025).

    An auto-encoder reconstructs blurred multi-backbone features; anomalies are where the
    pooled 5×5 neighbourhood embeddings of features and reconstruction differ. Defaults are the
    paper's backbones (DenseNet201 + CaiT-XXS24-384 at 384 px) with the authors' MVTec AD
    hyperparameters; ``configs/pdae/loco.yaml`` holds the MVTec LOCO ones. Trains with Adam and a
    per-epoch MultiStepLR schedule for as long as the trainer runs (``Engine(max_epochs=...)``,
    ``--trainer.max_epochs``; the paper's 250 epochs are in ``configs/pdae/mvtec.yaml``); the last
    epoch is the model: nothing is selected on the test split.

    Args:
        backbones: ``(timm name, layer names)`` pairs; the first map sets the feature grid.
        pre_trained: timm's pretrained weights for backbones without a local ``weights`` file.
        weights: local weights files, one per backbone (``None`` entries allowed).
        image_size: input size of the default pre-processor (resize only: every backbone
            normalises its own input).
        hidden_widths: AE widths before the 100-channel bottleneck: the authors' 512, 256, 128
            whatever the feature width; ``None`` = derived from the feature width (largest power
            of two ≤ C, halved twice).
        bottleneck_channels: AE code channels.
        embedding_dim: pooled length of each neighbourhood vector (P_k).
        loss_patch_size: k of the P_k in the cosine loss term.
        score_patch_size: k of the P_k in the scores.
        score_weight: lambda; image score = lambda·s_cp + (1 − lambda)·s_cd.
        beta: weight of the cosine loss term.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        lr_milestones: epochs at which MultiStepLR multiplies the learning rate by ``lr_gamma``.
        lr_gamma: MultiStepLR factor.
        cutpaste: reconstruct the features of CutPaste-augmented images (target: the clean ones).
            Scar sizes are pixels of the training images' native width (read from the first
            training image when fitting), as the authors apply CutPaste before resizing.
        blur_sigma: sigma of the 3×3 Gaussian on the concatenated features.

    Example:
        >>> from anomalib.data import MVTecAD
        >>> from anomalib.engine import Engine
        >>> model = Pdae()  # doctest: +SKIP
        >>> engine = Engine(max_epochs=250)
        >>> engine.fit(model, datamodule=MVTecAD(category="bottle", train_batch_size=4))  # doctest: +SKIP
    """

    def __init__(
        self,
        backbones: Sequence[tuple[str, Sequence[str]]] = DEFAULT_BACKBONES,
        pre_trained: bool = True,
        weights: Sequence[str | Path | None] | None = None,
        image_size: tuple[int, int] = (384, 384),
        hidden_widths: Sequence[int] | None = AUTHORS_WIDTHS,
        bottleneck_channels: int = 100,
        embedding_dim: int = 512,
        loss_patch_size: int = 3,
        score_patch_size: int = 5,
        score_weight: float = 0.65,
        beta: float = 100.0,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        lr_milestones: Sequence[int] = MVTEC_MILESTONES,
        lr_gamma: float = 0.8,
        cutpaste: bool = False,
        blur_sigma: float = 4.0,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        _validate(
            image_size=image_size,
            embedding_dim=embedding_dim,
            loss_patch_size=loss_patch_size,
            score_patch_size=score_patch_size,
            score_weight=score_weight,
            beta=beta,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            lr_milestones=lr_milestones,
            lr_gamma=lr_gamma,
        )
        image_size = tuple(image_size)
        if pre_processor is True:
            pre_processor = self.configure_pre_processor(image_size)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.model = PdaeModel(
            backbones=backbones,
            image_size=image_size,
            pre_trained=pre_trained,
            weights=weights,
            hidden_widths=hidden_widths,
            bottleneck_channels=bottleneck_channels,
            embedding_dim=embedding_dim,
            score_patch_size=score_patch_size,
            score_weight=score_weight,
            blur_sigma=blur_sigma,
        )
        self.loss = PdaeLoss(beta=beta, patch_size=loss_patch_size, embedding_dim=embedding_dim)
        self.cutpaste = CutPaste() if cutpaste else None
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.lr_milestones = list(lr_milestones)
        self.lr_gamma = lr_gamma

    def setup(self, stage: str | None = None) -> None:
        """Check the datamodule's splits (``check_datamodule``); give CutPaste the native image width."""
        super().setup(stage)
        check_datamodule(self, stage)
        if self.cutpaste is not None and self.cutpaste.native_width is None and self._trainer is not None:
            self.cutpaste.native_width = _native_width(getattr(self._trainer, "datamodule", None))

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize only (default 384×384); each backbone normalises its own input."""
        return PreProcessor(transform=Compose([Resize(image_size or (384, 384), antialias=True)]))

    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Reconstruct the (optionally CutPaste-augmented) features; log the loss and its terms."""
        del args, kwargs
        augmented = self.cutpaste(batch.image) if self.cutpaste is not None else None
        features, reconstruction = self.model(batch.image, augmented)
        mse, cosine = self.loss.terms(features, reconstruction)
        loss = mse + self.loss.beta * cosine
        size = len(batch.image)
        self.log("train_loss", loss, on_epoch=True, prog_bar=True, logger=True, batch_size=size)
        self.log("train_mse", mse, on_epoch=True, logger=True, batch_size=size)
        self.log("train_cosine", cosine, on_epoch=True, logger=True, batch_size=size)
        return {"loss": loss}

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Score the batch (metrics only: no checkpoint or epoch is chosen on them)."""
        del args, kwargs
        predictions = self.model(batch.image)
        return batch.update(**predictions._asdict())

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """Adam on the auto-encoder with a per-epoch MultiStepLR schedule."""
        optimizer = optim.Adam(
            self.model.autoencoder.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        scheduler = optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=self.lr_milestones, gamma=self.lr_gamma
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No sanity validation, no gradient clipping; the trainer's own limits bound the run."""
        return {"num_sanity_val_steps": 0, "gradient_clip_val": 0}

    @property
    def learning_type(self) -> LearningType:
        """One-class: trained on normal images only."""
        return LearningType.ONE_CLASS


def _validate(**arguments: Any) -> None:
    """Reject hyperparameters outside their meaningful ranges with a message naming them."""
    rules = {
        "image_size": (lambda v: len(v) == 2 and all(int(s) > 0 for s in v), "two positive integers"),
        "embedding_dim": (lambda v: int(v) >= 1, "a positive integer"),
        "loss_patch_size": (lambda v: int(v) >= 1 and int(v) % 2 == 1, "a positive odd integer"),
        "score_patch_size": (lambda v: int(v) >= 1 and int(v) % 2 == 1, "a positive odd integer"),
        "score_weight": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
        "beta": (lambda v: v >= 0, "a number >= 0"),
        "learning_rate": (lambda v: v > 0, "a number > 0"),
        "weight_decay": (lambda v: v >= 0, "a number >= 0"),
        "lr_milestones": (lambda v: all(int(m) >= 1 for m in v), "positive epoch numbers"),
        "lr_gamma": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    }
    for name, value in arguments.items():
        check, allowed = rules[name]
        if not check(value):
            msg = f"Pdae: {name} must be {allowed}, got {value!r}."
            raise ValueError(msg)


def _native_width(datamodule: object) -> int | None:
    """Width in pixels of the first training image as stored on disk (``None`` if unknown)."""
    samples = getattr(getattr(datamodule, "train_data", None), "samples", None)
    if samples is None or len(samples) == 0 or "image_path" not in samples:
        return None
    with Image.open(samples["image_path"].iloc[0]) as image:  # reads the header only
        return image.width
