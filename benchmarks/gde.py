"""GDE, the Gaussian density baseline of REB Table 5, as a small anomalib model.

REB §4.6: "the GDE method utilized the features from the last layer of Res18". As in CutPaste
(Li et al., 2021) and REB's own code, one vector per image: the backbone's last feature map,
global-average-pooled and L2-normalised. Fitting estimates the mean and a Ledoit–Wolf shrunk
covariance of the training vectors; the image score is the Mahalanobis distance to that
Gaussian. GDE is an image-level detector: it gives no anomaly map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch, InferenceBatch
from anomalib.models.components import AnomalibModule
from anomalib.pre_processing import PreProcessor
from lightning.pytorch.utilities.types import STEP_OUTPUT
from sklearn.covariance import LedoitWolf
from torch import nn
from torch.nn import functional as F
from torchvision.transforms.v2 import Resize

from anomalib_pdae.models.components.backbone import Backbone


def image_embedding(feature_map: torch.Tensor) -> torch.Tensor:
    """Global average pool of ``(B, C, H, W)`` then L2 normalisation: ``(B, C)``."""
    return F.normalize(feature_map.mean(dim=(2, 3)), p=2, dim=1)


def mahalanobis(values: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """``sqrt((x - mean)^T precision (x - mean))`` for every row ``x`` of ``values``."""
    centred = values - mean
    return torch.einsum("bi,ij,bj->b", centred, precision, centred).clamp_min(0).sqrt()


class GdeModel(nn.Module):
    """Backbone's last layer → pooled unit vector → Mahalanobis distance to the training Gaussian.

    Example:
        >>> model = GdeModel("resnet18", "layer4", pre_trained=False)
        >>> model.fit(torch.randn(20, 512))
        >>> model.eval()(torch.rand(2, 3, 64, 64)).pred_score.shape
        torch.Size([2])
    """

    def __init__(
        self, backbone: str, layer: str, pre_trained: bool = True, weights: str | Path | None = None
    ) -> None:
        super().__init__()
        self.backbone = Backbone(backbone, [layer], pre_trained=pre_trained, weights=weights)
        self.register_buffer("mean", torch.empty(0))
        self.register_buffer("precision", torch.empty(0, 0))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """One L2-normalised vector per image."""
        with torch.no_grad():
            return image_embedding(self.backbone(images)[0])

    def fit(self, embeddings: torch.Tensor) -> None:
        """Mean and Ledoit–Wolf precision of the training embeddings (float64 for the inverse)."""
        if len(embeddings) < 2:
            msg = f"GDE needs at least 2 training images, got {len(embeddings)}"
            raise ValueError(msg)
        values = embeddings.double().cpu()
        precision = LedoitWolf().fit(values.numpy()).precision_
        self.mean = values.mean(0).to(self.mean.device, torch.float32)
        self.precision = torch.from_numpy(precision).to(self.mean.device, torch.float32)

    def forward(self, images: torch.Tensor) -> torch.Tensor | InferenceBatch:
        """Training: the embeddings. Eval: the image scores (no anomaly map)."""
        embeddings = self.embed(images)
        if self.training:
            return embeddings
        if self.mean.numel() == 0:
            msg = "GDE is not fitted: train it first"
            raise RuntimeError(msg)
        return InferenceBatch(pred_score=mahalanobis(embeddings, self.mean, self.precision))


class Gde(AnomalibModule):
    """Gaussian density estimation on pooled last-layer features (REB Table 5's GDE column).

    Args:
        backbone: timm architecture (REB: ``resnet18``).
        layer: the last feature layer (``layer4`` for ResNets).
        pre_trained: timm's pretrained weights (needs the hub) unless ``weights`` is given.
        weights: local timm weights file.

    Example:
        >>> from anomalib.data import MVTecAD
        >>> from anomalib.engine import Engine
        >>> model = Gde("resnet18", "layer4")
        >>> Engine().fit(model, datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        layer: str = "layer4",
        pre_trained: bool = True,
        weights: str | Path | None = None,
        pre_processor: PreProcessor | bool = True,
        post_processor: bool = False,
        evaluator: bool = False,
        visualizer: bool = False,
    ) -> None:
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.model = GdeModel(backbone, layer, pre_trained=pre_trained, weights=weights)
        self.embeddings: list[torch.Tensor] = []

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize only (default 256×256); the backbone normalises its own input."""
        return PreProcessor(transform=Resize(image_size or (256, 256), antialias=True))

    @staticmethod
    def configure_optimizers() -> None:
        """Nothing to optimise."""
        return

    def training_step(self, batch: Batch, *args, **kwargs) -> torch.Tensor:
        """Collect the image embeddings of a batch of normal images."""
        del args, kwargs
        self.embeddings.append(self.model(batch.image).cpu())
        return torch.tensor(0.0, requires_grad=True, device=self.device)

    def on_train_epoch_end(self) -> None:
        """Fit the Gaussian once every training image has been embedded."""
        self.model.fit(torch.cat(self.embeddings))
        self.embeddings = []

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Image scores of a batch."""
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """One pass over the training data, no sanity validation."""
        return {"gradient_clip_val": 0, "max_epochs": 1, "num_sanity_val_steps": 0, "devices": 1}

    @property
    def learning_type(self) -> LearningType:
        """Trained on normal images only."""
        return LearningType.ONE_CLASS
