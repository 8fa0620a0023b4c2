"""REB (Lyu et al.): DefectMaker self-supervised fine-tuning, then LDKNN, as an anomalib model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import nn
from torch.optim import SGD
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts
from torchvision.transforms.v2 import Resize

from anomalib_pdae.data.defectmaker import SALIENCY_MODES, Saliency, defect_batch, defect_task
from anomalib_pdae.models.components.defaults import PluginDefaultsMixin
from anomalib_pdae.models.components.embedding_store import EmbeddingStore
from anomalib_pdae.models.components.guards import CheckpointGuard, check_datamodule
from anomalib_pdae.models.components.memory_bank import fit_from_store
from anomalib_pdae.models.ldknn.settings import DEFAULTS as LDKNN
from anomalib_pdae.models.ldknn.settings import LdknnSettings
from anomalib_pdae.models.ldknn.torch_model import EMBEDDING_MEMORY_BYTES

from .torch_model import RebModel

logger = logging.getLogger(__name__)

SSL_LOSSES = ("bce", "cross_entropy")
BACKBONE_FILE = Path("weights") / "reb_backbone.safetensors"


class Reb(PluginDefaultsMixin, CheckpointGuard, AnomalibModule):
    """REB: a backbone fine-tuned on DefectMaker's synthetic defects, then LDKNN on top of it.

    Training has two phases inside one ``Engine.fit``:

    1. **Fine-tuning.** Every training batch becomes its 7 DefectMaker variants (normal + six
       defect types; ``defects`` picks CutPaste's or DRAEM's defects instead, REB Table 5);
       the backbone → global pool → MLP classifier learns the classification task with
       SGD and cosine warm restarts, one optimiser update per ``images_per_update`` images
       (gradients accumulated over batches), the backbone frozen for the first
       ``freeze_updates`` updates. Progress (update, loss, learning rate) is on the progress bar.
    2. **Memory bank.** After ``num_updates`` updates the fine-tuned backbone is written to
       ``backbone_path`` (safetensors, timm names: ``Ldknn(weights=...)`` loads it), LDKNN is
       rebuilt on it, one more pass over the training images fills its memory bank (counted as
       one trainer step), and training stops; validation, test and export then behave exactly
       like :class:`Ldknn`.

    The trainer's ``max_epochs`` / ``max_steps`` bound the run as for any anomalib model. When
    they leave no room for the remaining updates, fine-tuning stops early so that the last epoch
    the trainer allows is the bank pass: a capped run still ends with a usable, exportable model,
    and one warning says so. REB's schedule runs to the end with ``max_epochs=-1``
    (``configs/reb/mvtec.yaml``).

    The optimiser, scheduler and counters are in Lightning checkpoints, so ``Engine.fit(...,
    ckpt_path=...)`` resumes fine-tuning where it stopped.

    ``backbone``, ``layers`` and ``k`` … ``density_search`` form the LDKNN model's
    :class:`~anomalib_pdae.models.ldknn.LdknnSettings`, whose fields give their defaults.

    Args:
        backbone: timm architecture and weights tag (REB: ``resnet18.tv_in1k`` or
            ``wide_resnet50_2.tv_in1k``, torchvision's ImageNet weights).
        layers: LDKNN feature layers, shallow first.
        pre_trained: start from timm's pretrained weights (needs the model hub).
        weights: local ImageNet weights file for air-gapped machines (overrides ``pre_trained``).
        k: LDKNN neighbourhood size K.
        ld_coefficient: LDKNN gamma.
        density_mode: ``"subtract"`` or ``"ratio"`` (see :class:`Ldknn`).
        image_score: ``"block_max"`` or ``"max"``.
        scorer: ``"ldknn"`` or a KNN variant of :class:`Ldknn` (``"knn"`` gives the paper's
            "DefectMaker" row).
        distance: ``"squared"`` or ``"euclidean"``.
        coreset_ratio: fraction of the bank kept by the greedy coreset (1 keeps all).
        embedding_dim: D of the patch embedding; ``None`` = REB's for the backbone (see :class:`Ldknn`).
        aggregation: ``"reference"`` or ``"anomalib"``.
        map_score: ``"score"`` or ``"distance"`` (see :class:`Ldknn`).
        search: ``"exact"`` or ``"approximate"`` neighbour search (see :class:`Ldknn`).
        candidates: rows re-ranked per patch by the approximate search.
        projection_dim: width of the approximate search's PCA space.
        density_search: ``"exact"`` or ``"approximate"`` local densities at fit time (as ``Ldknn``).
        num_updates: optimiser updates of the fine-tuning (0 skips it: plain LDKNN).
        images_per_update: synthetic images (7 per training image) per update.
        freeze_updates: updates during which only the MLP head learns.
        lr: SGD learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        restart_period: ``T_0`` of the cosine annealing with warm restarts, in updates.
        min_lr: ``eta_min`` of the cosine annealing.
        ssl_loss: ``"bce"`` (per-class sigmoid BCE on one-hot labels, the code) or
            ``"cross_entropy"`` (the paper's text).
        defects: synthetic defects of the task: ``"defectmaker"`` (REB), DefectMaker with one
            fill (``"defectmaker_cutpaste"``, ``"defectmaker_noise"``: 4 classes), ``"cutpaste"``
            (CutPaste's rectangle and scar, 3 classes) or ``"draem"`` (Perlin regions with
            texture fills, 2 classes), as in REB's Table 5.
        texture_dir: ``defects="draem"`` only: texture images for the fills (DTD, as DRAEM and
            REB use); without it, fills are cut from other training images.
        saliency: ``"foreground"`` (estimate the object; whole image for textures) or
            ``"image"`` (whole image) where no user mask exists.
        saliency_dir: folder of user saliency masks (default ``<category>/saliency``).
        soften_prob: probability of softening a defect's edge (DefectMaker's defects).
        jitter: colour-jitter strength of base images and fills.
        seed: seed of the DefectMaker random generator.
        backbone_path: where to write the fine-tuned backbone (default
            ``<default_root_dir>/weights/reb_backbone.safetensors``).

    Example:
        >>> from anomalib.data import MVTecAD
        >>> from anomalib.engine import Engine
        >>> model = Reb(backbone="resnet18", num_updates=300)  # doctest: +SKIP
        >>> Engine(max_epochs=-1).fit(model, datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
    """

    def __init__(
        self,
        backbone: str = LDKNN.backbone,
        layers: Sequence[str] = LDKNN.layers,
        pre_trained: bool = True,
        weights: str | Path | None = None,
        k: int = LDKNN.k,
        ld_coefficient: float = LDKNN.ld_coefficient,
        density_mode: str = LDKNN.density_mode,
        image_score: str = LDKNN.image_score,
        scorer: str = LDKNN.scorer,
        distance: str = LDKNN.distance,
        coreset_ratio: float = LDKNN.coreset_ratio,
        embedding_dim: int | None = LDKNN.embedding_dim,
        aggregation: str = LDKNN.aggregation,
        map_score: str = LDKNN.map_score,
        search: str = LDKNN.search,
        candidates: int = LDKNN.candidates,
        projection_dim: int = LDKNN.projection_dim,
        density_search: str = LDKNN.density_search,
        num_updates: int = 300,
        images_per_update: int = 1000,
        freeze_updates: int = 40,
        lr: float = 0.03,
        momentum: float = 0.9,
        weight_decay: float = 3e-5,
        restart_period: int = 330,
        min_lr: float = 1e-5,
        ssl_loss: str = "bce",
        defects: str = "defectmaker",
        texture_dir: str | Path | None = None,
        saliency: str = "foreground",
        saliency_dir: str | Path | None = None,
        soften_prob: float = 0.5,
        jitter: float = 0.1,
        seed: int = 0,
        backbone_path: str | Path | None = None,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        # the LDKNN arguments, flat for the CLI and the checkpoints, become one validated record
        settings = LdknnSettings.from_arguments(locals())
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        _check_schedule(
            num_updates, images_per_update, freeze_updates, lr, momentum, weight_decay, restart_period
        )
        if ssl_loss not in SSL_LOSSES:
            msg = f"ssl_loss must be one of {', '.join(map(repr, SSL_LOSSES))}; got {ssl_loss!r}."
            raise ValueError(msg)
        if saliency not in SALIENCY_MODES:
            msg = f"saliency must be one of {', '.join(map(repr, SALIENCY_MODES))}; got {saliency!r}."
            raise ValueError(msg)
        self.maker = defect_task(defects, jitter=jitter, soften_prob=soften_prob, texture_dir=texture_dir)
        self.model = RebModel(
            settings, pre_trained=pre_trained, weights=weights, num_classes=self.maker.num_classes
        )
        self.automatic_optimization = False
        self.num_updates = num_updates
        self.images_per_update = images_per_update
        self.freeze_updates = freeze_updates
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.restart_period, self.min_lr = restart_period, min_lr
        self.ssl_loss = ssl_loss
        self.seed = seed
        self.backbone_path = Path(backbone_path) if backbone_path is not None else None
        self.saliency = Saliency(saliency, saliency_dir)
        # Progress, kept in checkpoints: finished updates, fine-tuning batches, bank state, cap.
        self.register_buffer("updates", torch.tensor(0))
        self.register_buffer("batches", torch.tensor(0))
        self.register_buffer("_is_fitted", torch.tensor(False))
        self.register_buffer("_stopped_early", torch.tensor(False))  # by the trainer's limits
        self._accumulated = 0
        self._collecting = False
        self.embeddings = EmbeddingStore(EMBEDDING_MEMORY_BYTES)

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize to ``image_size`` (default 256×256, REB's). The backbone normalises its own input."""
        return PreProcessor(transform=Resize(image_size or (256, 256), antialias=True))

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD over the classifier, cosine annealing with warm restarts stepped once per update."""
        optimizer = SGD(
            self.model.classifier.parameters(),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )
        scheduler = CosineAnnealingWarmRestarts(optimizer, T_0=self.restart_period, eta_min=self.min_lr)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @property
    def finetuned(self) -> bool:
        """Whether fine-tuning is over: all updates done, or stopped early by the trainer's limits."""
        return int(self.updates) >= self.num_updates or bool(self._stopped_early)

    def setup(self, stage: str | None = None) -> None:
        """Check the datamodule's splits before the data loaders are built (see ``check_datamodule``)."""
        super().setup(stage)
        check_datamodule(self, stage)

    def on_train_epoch_start(self) -> None:
        """Decide the epoch's phase: fine-tuning, or filling the memory bank."""
        if not self.finetuned and self._no_room_for_finetuning():
            self._stop_finetuning_early()
        self._collecting = self.finetuned and not bool(self._is_fitted)
        if self._collecting:
            self.embeddings.clear()
            logger.info("Filling the LDKNN memory bank with the fine-tuned backbone.")

    def training_step(self, batch: Batch, batch_idx: int, *args, **kwargs) -> STEP_OUTPUT:
        """One fine-tuning forward/backward on the batch's synthetic variants, or bank collection."""
        del args, kwargs
        if self._collecting:
            self.embeddings.append(self.model.embed(batch.image))
            if batch_idx == self.trainer.num_training_batches - 1:
                self._count_bank_step()
                self.trainer.should_stop = True  # validation runs next, then training stops
            return None
        if self.finetuned:  # the last update fell inside this epoch
            return None
        return self._finetune_step(batch)

    def _finetune_step(self, batch: Batch) -> torch.Tensor:
        classifier = self.model.classifier
        classifier.set_encoder_frozen(int(self.updates) < self.freeze_updates)
        rng = np.random.default_rng((self.seed, int(self.batches)))
        saliencies = [
            self._saliency(image, path) for image, path in zip(batch.image, _paths(batch), strict=True)
        ]
        images, labels = defect_batch(batch.image, saliencies, self.maker, rng)
        self.batches += 1
        logits = self.model(images)
        if self.ssl_loss == "bce":
            loss = F.binary_cross_entropy_with_logits(
                logits, F.one_hot(labels, logits.shape[1]).to(logits.dtype)
            )
        else:
            loss = F.cross_entropy(logits, labels)
        # sum of per-image losses; divided by the image count when the update is applied
        self.manual_backward(loss * len(images))
        self._accumulated += len(images)
        if self._accumulated >= self.images_per_update:
            self._apply_update()
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        self.log("ssl_loss", loss.detach(), prog_bar=True, batch_size=len(images))
        self.log("ssl_accuracy", accuracy, prog_bar=True, batch_size=len(images))
        self.log("update", self.updates.float(), prog_bar=True, batch_size=len(images))
        return loss.detach()

    def _apply_update(self) -> None:
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        for parameter in self.model.classifier.parameters():
            if parameter.grad is not None:
                parameter.grad.div_(self._accumulated)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        self._accumulated = 0
        self.updates += 1
        self.log("lr", optimizer.param_groups[0]["lr"], prog_bar=True)
        if self.finetuned:
            self._finish_finetuning()
        elif self._no_room_for_finetuning():
            self._stop_finetuning_early()

    def _finish_finetuning(self) -> None:
        path = self.backbone_path or Path(self.trainer.default_root_dir) / BACKBONE_FILE
        self.model.classifier.save_backbone(path)
        self.model.use_backbone(path)
        logger.info("Fine-tuned backbone written to %s after %d updates.", path, int(self.updates))

    def _no_room_for_finetuning(self) -> bool:
        """Whether the trainer's limits leave only the bank pass (one epoch, one step) to run."""
        trainer = self.trainer
        max_epochs = trainer.max_epochs
        last_epoch = max_epochs is not None and 0 <= max_epochs <= trainer.current_epoch + 1
        last_step = 0 <= trainer.max_steps <= trainer.global_step + 1
        return last_epoch or last_step

    def _stop_finetuning_early(self) -> None:
        """End fine-tuning where it is (a partly accumulated update is dropped) and say so."""
        trainer = self.trainer
        logger.warning(
            "Reb: the trainer's limits (max_epochs=%s, max_steps=%s) end fine-tuning after %d of %d "
            "updates; the memory bank is built on the backbone as it stands. Run REB's full schedule "
            "with max_epochs=-1 (configs/reb/mvtec.yaml).",
            trainer.max_epochs,
            trainer.max_steps,
            int(self.updates),
            self.num_updates,
        )
        self.optimizers().zero_grad(set_to_none=True)
        self._accumulated = 0
        self._stopped_early = torch.tensor(True, device=self.device)
        if int(self.updates) > 0:
            self._finish_finetuning()

    def _count_bank_step(self) -> None:
        """Count the bank pass as one trainer step, as memory-bank models count their batches.

        anomalib's checkpoint callback saves only when the step count moved; after zero
        fine-tuning updates the bank would otherwise never be saved. No gradient exists here
        (every update ends with ``zero_grad(set_to_none=True)``), so the step changes nothing.
        """
        self.optimizers().step()

    def fit(self) -> None:
        """Build the LDKNN memory bank from the collected embeddings."""
        if not self.embeddings:
            msg = "Reb has no training embeddings: check the datamodule's training split."
            raise ValueError(msg)
        logger.info("Fitting LDKNN on %d patch embeddings.", len(self.embeddings))
        fit_from_store(self.model.ldknn.fit, self.embeddings, self.device)
        self._is_fitted = torch.tensor(True, device=self.device)

    def on_validation_start(self) -> None:
        """Fit the bank once the collection pass is done."""
        if self._collecting and not bool(self._is_fitted):
            self.fit()

    def on_train_epoch_end(self) -> None:
        """Fit the bank after the collection pass when no validation did it."""
        if self._collecting and not bool(self._is_fitted):
            self.fit()
            self.trainer.should_stop = True

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Score a batch with LDKNN on the fine-tuned backbone, a few images at a time."""
        del args, kwargs
        return batch.update(**self.model.ldknn.score(batch.image)._asdict())

    def test_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """As :meth:`validation_step` (anomalib's ``test_step`` scores the whole batch at once)."""
        return self.validation_step(batch, *args, **kwargs)

    def _saliency(self, image: torch.Tensor, path: str | None) -> np.ndarray:
        array = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return self.saliency(array, path)

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """Validate only after the bank is built; the trainer's own limits bound the run."""
        return {
            "check_val_every_n_epoch": None,
            "val_check_interval": 2**62,
            "num_sanity_val_steps": 0,
            "gradient_clip_val": 0,
            "accumulate_grad_batches": 1,
            "devices": 1,
        }

    @property
    def learning_type(self) -> LearningType:
        """Trained on normal images only."""
        return LearningType.ONE_CLASS


def _paths(batch: Batch) -> list[str | None]:
    paths = getattr(batch, "image_path", None)
    return list(paths) if paths is not None else [None] * len(batch.image)


def _check_schedule(
    num_updates: int,
    images_per_update: int,
    freeze_updates: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    restart_period: int,
) -> None:
    checks = {
        "num_updates": (num_updates, num_updates >= 0, "an integer >= 0"),
        "images_per_update": (images_per_update, images_per_update >= 1, "an integer >= 1"),
        "freeze_updates": (freeze_updates, freeze_updates >= 0, "an integer >= 0"),
        "lr": (lr, lr > 0, "> 0"),
        "momentum": (momentum, 0 <= momentum < 1, "in [0, 1)"),
        "weight_decay": (weight_decay, weight_decay >= 0, ">= 0"),
        "restart_period": (restart_period, restart_period >= 1, "an integer >= 1"),
    }
    for name, (value, ok, allowed) in checks.items():
        if not ok:
            msg = f"{name} must be {allowed}; got {value!r}."
            raise ValueError(msg)
