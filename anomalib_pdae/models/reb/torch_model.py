"""REB as a plain torch module: the self-supervised classifier and the LDKNN scorer beside it."""

from __future__ import annotations

from pathlib import Path

import torch
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_pdae.data.defectmaker import NUM_CLASSES
from anomalib_pdae.models.ldknn import LdknnModel, LdknnSettings

from .classifier import DefectClassifier


class RebModel(nn.Module):
    """DefectMaker-fine-tuned backbone + LDKNN (REB §3).

    ``classifier`` is the network fine-tuned on the synthetic-defect task (7 DefectMaker classes
    by default); ``ldknn`` scores test images with the fine-tuned backbone once
    :meth:`use_backbone` has loaded it. In training mode ``forward`` returns the classifier's
    logits; in eval mode LDKNN's ``InferenceBatch``.

    Args:
        settings: LDKNN's configuration; its backbone is the classifier's too.
        pre_trained: start from timm's pretrained weights (needs the model hub).
        weights: local weights file for air-gapped machines (overrides ``pre_trained``).
        num_classes: classes of the self-supervised task.

    Example:
        >>> settings = LdknnSettings(backbone="resnet18", k=2)
        >>> model = RebModel(settings, pre_trained=False)
        >>> model.train()(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 7])
    """

    def __init__(
        self,
        settings: LdknnSettings | None = None,
        pre_trained: bool = True,
        weights: str | Path | None = None,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        settings = settings or LdknnSettings()
        # LDKNN first: its backbone checks the architecture and layer names with clear messages
        self.ldknn = LdknnModel(settings, pre_trained=pre_trained, weights=weights)
        self.classifier = DefectClassifier(settings.backbone, pre_trained, weights, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor | InferenceBatch:
        """Training: class logits ``(B, num_classes)``. Eval: LDKNN scores and anomaly maps."""
        if self.training:
            return self.classifier(images)
        return self.ldknn(images)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """LDKNN patch embeddings ``(B·H·W, D)`` for the memory bank."""
        was_training = self.ldknn.training
        embeddings = self.ldknn.train()(images)
        self.ldknn.train(was_training)
        return embeddings

    def use_backbone(self, weights: str | Path) -> None:
        """Rebuild LDKNN on a backbone weights file (the fine-tuned one); its bank starts empty."""
        device = next(self.classifier.parameters()).device
        self.ldknn = LdknnModel(self.ldknn.settings, weights=weights).to(device)
