"""GDE, the Gaussian density baseline of REB Table 5, as an anomalib model."""

from __future__ import annotations

from pathlib import Path

from anomalib.data import Batch
from anomalib.metrics import AUROC, Evaluator, F1Score
from anomalib.models.components import AnomalibModule
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import nn

from anomalib_pdae.models.components.defaults import PluginDefaultsMixin
from anomalib_pdae.models.components.guards import CheckpointGuard
from anomalib_pdae.models.components.memory_bank import EmbeddingBankMixin

from .torch_model import GdeModel


class Gde(PluginDefaultsMixin, CheckpointGuard, EmbeddingBankMixin, AnomalibModule):
    """Gaussian density estimation on pooled last-layer features (REB Table 5's GDE column).

    REB §4.6: "the GDE method utilized the features from the last layer of Res18". As in CutPaste
    (Li et al., 2021) and REB's own code, one vector per image: the backbone's last feature map,
    global-average-pooled and L2-normalised. Training collects the vectors of the normal images
    (one epoch); fitting estimates their mean and a Ledoit–Wolf shrunk covariance; the image
    score is the Mahalanobis distance to that Gaussian. GDE is an image-level detector: it gives
    no anomaly map, so the pixel metrics stay empty. Input: resized to 256×256; the backbone
    normalises it.

    Args:
        backbone: timm architecture, optionally with its weights tag (REB: ResNet-18).
        layer: the last feature layer (``layer4`` for ResNets).
        pre_trained: timm's pretrained weights (needs the hub) unless ``weights`` is given.
        weights: local timm weights file for air-gapped machines.

    Example:
        >>> from anomalib.data import MVTecAD
        >>> from anomalib.engine import Engine
        >>> model = Gde("resnet18", "layer4")  # doctest: +SKIP
        >>> Engine().fit(model, datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        layer: str = "layer4",
        pre_trained: bool = True,
        weights: str | Path | None = None,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.model = GdeModel(backbone, layer, pre_trained=pre_trained, weights=weights)

    @staticmethod
    def configure_evaluator() -> Evaluator:
        """Image AUROC and F1: GDE has no anomaly map for the pixel metrics."""
        image_auroc = AUROC(fields=["pred_score", "gt_label"], prefix="image_")
        image_f1score = F1Score(fields=["pred_label", "gt_label"], prefix="image_")
        return Evaluator(test_metrics=[image_auroc, image_f1score])

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Image scores of a batch."""
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())
