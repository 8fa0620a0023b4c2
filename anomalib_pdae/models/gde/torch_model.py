"""GDE as a plain torch module: pooled last-layer features, Mahalanobis distance to their Gaussian."""

from __future__ import annotations

from pathlib import Path

import torch
from anomalib.data import InferenceBatch
from anomalib.models.components import DynamicBufferMixin
from torch import nn
from torch.nn import functional as F

from anomalib_pdae.models.components.backbone import Backbone


def image_embedding(feature_map: torch.Tensor) -> torch.Tensor:
    """Global average pool of ``(B, C, H, W)`` then L2 normalisation: ``(B, C)``."""
    return F.normalize(feature_map.mean(dim=(2, 3)), p=2, dim=1)


def mahalanobis(values: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """``sqrt((x - mean)^T precision (x - mean))`` for every row ``x`` of ``values``."""
    centred = values - mean
    return torch.einsum("bi,ij,bj->b", centred, precision, centred).clamp_min(0).sqrt()


class GdeModel(DynamicBufferMixin, nn.Module):
    """Backbone's last layer → pooled unit vector → Mahalanobis distance to the training Gaussian.

    The fitted mean and precision are buffers that may change size between checkpoints.

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
        from sklearn.covariance import LedoitWolf  # scikit-learn loads only when GDE is fitted

        if len(embeddings) < 2:
            msg = f"GDE needs at least 2 training images, got {len(embeddings)}"
            raise ValueError(msg)
        values = embeddings.double().cpu()
        precision = LedoitWolf().fit(values.numpy()).precision_
        self.mean = values.mean(0).to(self.mean.device, torch.float32)
        self.precision = torch.from_numpy(precision).to(self.mean.device, torch.float32)

    def check_fitted(self) -> None:
        """Raise a ``RuntimeError`` naming the cause when no Gaussian has been fitted."""
        if self.mean.numel() == 0:
            msg = (
                "GDE is not fitted: train it on normal images (Engine.fit / `anomalib train`) or "
                "load a trained checkpoint (--ckpt_path) before testing, predicting or exporting."
            )
            raise RuntimeError(msg)

    def forward(self, images: torch.Tensor) -> torch.Tensor | InferenceBatch:
        """Training: the embeddings. Eval: the image scores (no anomaly map)."""
        embeddings = self.embed(images)
        if self.training:
            return embeddings
        self.check_fitted()
        return InferenceBatch(pred_score=mahalanobis(embeddings, self.mean, self.precision))
