"""ULSAD (Revisiting Deep Feature Reconstruction for Logical and Structural Anomaly Detection)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.data.utils.split import ValSplitMode, random_split
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import Resize

from anomalib_pdae.models.components.defaults import PluginDefaultsMixin
from anomalib_pdae.models.components.guards import CheckpointGuard, check_datamodule

from .torch_model import UlsadModel

logger = logging.getLogger(__name__)

# Validation splits whose images are test images: their quantiles would leak the test set.
_TEST_DERIVED_SPLITS = (ValSplitMode.SAME_AS_TEST, ValSplitMode.FROM_TEST, ValSplitMode.NONE)


class Ulsad(PluginDefaultsMixin, CheckpointGuard, AnomalibModule):
    """ULSAD: deep feature reconstruction with a local and a global (attention-trained) branch.

    The map quantiles are computed on NORMAL validation images whenever the weights changed
    since the last computation (before each validation and at the end of training). When the
    datamodule's validation images are test images (anomalib's default for ``MVTecAD``:
    ``val_split_mode="same_as_test"``), ``holdout_ratio`` of the training images are held out for
    this instead and not trained on, so no test image ever influences the model.

    Args:
        backbone: timm architecture of the frozen feature extractor.
        layers: two (or more) of its layers; the first sets the feature grid.
        pre_trained: load timm's pretrained weights for the backbone.
        weights: a local weights file for the backbone (air-gapped machines).
        feature_dim: channels the concatenated layers are pooled to.
        image_size: ``(height, width)`` the images are resized to.
        lambda_local: cosine weight in the local distance.
        lambda_attention: cosine weight in the attention distance.
        lambda_global: cosine weight in the global distance.
        quantile_low: lower quantile of the map normalisation.
        quantile_high: upper quantile of the map normalisation.
        blur_sigma: Gaussian blur of the maps, in pixels.
        local_output_relu: end the local auto-encoder with a ReLU, as the published code does
            (see the README: it cannot reconstruct the negative standardised features).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        holdout_ratio: fraction of the training images held out for the quantiles when the
            validation images come from the test set.
        pre_processor: pre-processor, or ``True`` for a resize to ``image_size``.
        post_processor: post-processor, or ``True`` for anomalib's default.
        evaluator: evaluator, or ``True`` for anomalib's default.
        visualizer: visualizer, or ``True`` for anomalib's default.

    Example:
        >>> from anomalib.data import MVTecLOCO
        >>> from anomalib.engine import Engine
        >>> model = Ulsad(backbone="resnet18", pre_trained=False, feature_dim=64, image_size=(128, 128))
        >>> engine = Engine(max_epochs=200)
        >>> engine.fit(model, datamodule=MVTecLOCO(category="breakfast_box"))  # doctest: +SKIP
    """

    def __init__(
        self,
        backbone: str = "wide_resnet50_2.racm_in1k",
        layers: Sequence[str] = ("layer2", "layer3"),
        pre_trained: bool = True,
        weights: str | Path | None = None,
        feature_dim: int = 384,
        image_size: tuple[int, int] = (256, 256),
        lambda_local: float = 0.5,
        lambda_attention: float = 0.5,
        lambda_global: float = 0.5,
        quantile_low: float = 0.9,
        quantile_high: float = 0.995,
        blur_sigma: float = 4.0,
        local_output_relu: bool = False,
        lr: float = 2e-4,
        weight_decay: float = 2e-5,
        holdout_ratio: float = 0.1,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        if lr <= 0:
            msg = f"lr must be positive, got {lr}."
            raise ValueError(msg)
        if weight_decay < 0:
            msg = f"weight_decay must be non-negative, got {weight_decay}."
            raise ValueError(msg)
        if not 0 < holdout_ratio < 1:
            msg = f"holdout_ratio must lie strictly between 0 and 1, got {holdout_ratio}."
            raise ValueError(msg)
        image_size = tuple(int(side) for side in image_size)
        if pre_processor is True:
            pre_processor = self.configure_pre_processor(image_size)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.model = UlsadModel(
            backbone=backbone,
            layers=layers,
            pre_trained=pre_trained,
            weights=weights,
            feature_dim=feature_dim,
            image_size=image_size,
            lambda_local=lambda_local,
            lambda_attention=lambda_attention,
            lambda_global=lambda_global,
            quantile_low=quantile_low,
            quantile_high=quantile_high,
            blur_sigma=blur_sigma,
            local_output_relu=local_output_relu,
        )
        self.lr = lr
        self.weight_decay = weight_decay
        self.holdout_ratio = holdout_ratio
        self._holdout: Dataset | None = None  # training images held out for the quantiles
        self._calibrated = True  # False once a training step changed the weights

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize only: the backbone normalises its own input."""
        return PreProcessor(transform=Resize(image_size or (256, 256), antialias=True))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam on both auto-encoders (the backbone is frozen)."""
        parameters = [*self.model.local_ae.parameters(), *self.model.global_ae.parameters()]
        return torch.optim.Adam(parameters, lr=self.lr, weight_decay=self.weight_decay)

    def setup(self, stage: str) -> None:
        """Hold out training images for the quantiles if the validation images are test images.

        The split is made once per datamodule (kept on it as ``ulsad_holdout``), so fitting
        again, or fitting another Ulsad on the same datamodule, does not shrink the training set
        further.
        """
        check_datamodule(self, stage)
        if stage != "fit":
            return
        self._holdout = None
        datamodule = getattr(self.trainer, "datamodule", None)
        if getattr(datamodule, "val_split_mode", None) not in _TEST_DERIVED_SPLITS:
            return
        held_out = getattr(datamodule, "ulsad_holdout", None)
        if held_out is None:
            train, held_out = _hold_out(datamodule.train_data, self.holdout_ratio, datamodule.seed)
            held_out.augmentations = self.pre_processor.transform if self.pre_processor else None
            datamodule.train_data = train
            datamodule.ulsad_holdout = held_out
            logger.warning(
                "ULSAD: validation split %r uses test images; %d of the training images are held out "
                "to compute the map quantiles (holdout_ratio=%s) and are not trained on.",
                datamodule.val_split_mode.value,
                len(held_out),
                self.holdout_ratio,
            )
        self._holdout = held_out

    def on_train_start(self) -> None:
        """Standardisation statistics from one pass over the training images (once)."""
        if not bool(self.model.features.fitted):
            self.model.features.fit(self._images(self.trainer.train_dataloader))

    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Sum of the local, attention and global losses."""
        del args, kwargs
        if batch.image.shape[0] < 2:
            return None  # batch norm of the global code (a 1×1 map) needs two images
        terms = self.model(batch.image)
        loss = sum(terms)
        self._calibrated = False
        size = len(batch.image)
        for name, value in {**terms._asdict(), "loss": loss}.items():
            self.log(f"train_{name}", value.item(), batch_size=size, prog_bar=name == "loss", on_epoch=True)
        return {"loss": loss}

    def on_validation_start(self) -> None:
        """Quantiles for the current weights before they are evaluated."""
        self._calibrate()

    def on_train_end(self) -> None:
        """Quantiles for the final weights, if no validation followed the last training step."""
        self._calibrate()

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Anomaly maps and scores of a validation batch."""
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())

    def _calibrate(self) -> None:
        if not self._calibrated:
            self.model.calibrate(self._normal_calibration_images())
            self._calibrated = True

    def _normal_calibration_images(self) -> Iterator[torch.Tensor]:
        """Normal validation images, or the held-out training images."""
        if self._holdout is not None:
            dataset = self._holdout
            batch_size = getattr(self.trainer.datamodule, "eval_batch_size", 32)
            loader = DataLoader(dataset, batch_size=batch_size, collate_fn=dataset.collate_fn)
            yield from self._images(loader)
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        loaders = datamodule.val_dataloader() if datamodule is not None else self.trainer.val_dataloaders
        if loaders is None:
            msg = "ULSAD computes its map quantiles on normal validation images; there is no validation data."
            raise ValueError(msg)
        for loader in loaders if isinstance(loaders, Sequence) else [loaders]:
            for batch in loader:
                normal = batch.gt_label == 0
                if normal.any():
                    yield self._transform(batch.image[normal])

    def _images(self, loader: Any) -> Iterator[torch.Tensor]:
        for batch in loader:
            yield self._transform(batch.image)

    def _transform(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        return self.pre_processor.transform(images) if self.pre_processor else images

    def __getstate__(self) -> dict[str, Any]:
        """Leave the held-out dataset out of pickles (``torch.save`` of the whole model)."""
        state = self.__dict__.copy()
        state["_holdout"] = None
        return state

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No sanity validation: the quantiles need a trained model."""
        return {"num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        """One-class: trained on normal images only."""
        return LearningType.ONE_CLASS


def _hold_out(dataset: Any, ratio: float, seed: int | None) -> tuple[Any, Any]:
    """``(train, held_out)``: ``ratio`` of the images, and at least one, held out at random.

    A handful of good parts is a normal dataset: 10 % of 5 images rounds to none, so one is
    held out instead. Two images must stay for training (the global branch's batch norm needs
    two per batch).
    """
    total = len(dataset)
    count = max(1, math.floor(total * ratio))
    if total - count < 2:
        msg = (
            f"Ulsad needs at least {count + 2} training images to hold out {count} for the map "
            f"quantiles and train on 2; the training split has {total}. Add normal images, or give "
            "the datamodule normal validation images (e.g. MVTecAD(val_split_mode='from_train'))."
        )
        raise ValueError(msg)
    # anomalib's split floors ``total * ratio``: half an image above ``count`` selects exactly it
    return random_split(dataset, (count + 0.5) / total, seed=seed)
