"""The self-supervised network of REB: a timm backbone, global pooling and a 7-class MLP head."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from anomalib_pdae.data.defectmaker import NUM_CLASSES
from anomalib_pdae.models.components.weights import create_timm_model

HIDDEN = (512, 256)


class DefectClassifier(nn.Module):
    """Backbone → last stage → global average pool → MLP (C → 512 → 256 → classes, BN + ReLU).

    The backbone is the complete timm model, so :meth:`save_backbone` writes a state dict with
    timm's own parameter names that ``Backbone(weights=...)`` and ``Ldknn(weights=...)`` load.

    Args:
        backbone: timm architecture.
        pre_trained: start from timm's pretrained weights (needs the model hub).
        weights: local weights file with timm names (overrides ``pre_trained``).
        num_classes: classes of the self-supervised task.

    Example:
        >>> net = DefectClassifier("resnet18", pre_trained=False)
        >>> net(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 7])
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        pre_trained: bool = True,
        weights: str | Path | None = None,
        num_classes: int = NUM_CLASSES,
    ) -> None:
        super().__init__()
        self.encoder = create_timm_model(backbone, pre_trained, weights)
        config = self.encoder.pretrained_cfg
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config["std"]).view(1, -1, 1, 1), persistent=False)
        channels = self.encoder.feature_info[-1]["num_chs"]
        layers: list[nn.Module] = []
        for width in HIDDEN:
            layers += [nn.Linear(channels, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            channels = width
        self.head = nn.Sequential(*layers, nn.Linear(channels, num_classes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Last-stage feature map ``(B, C, h, w)`` of ``[0, 1]`` RGB images."""
        normalized = (images - self.mean) / self.std
        if hasattr(self.encoder, "forward_intermediates"):
            return self.encoder.forward_intermediates(normalized, indices=1, intermediates_only=True)[-1]
        return self.encoder.forward_features(normalized)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.features(images).mean(dim=(2, 3)))

    def set_encoder_frozen(self, frozen: bool) -> None:
        """Freeze the backbone (no gradients, batch-norm statistics fixed) or release it."""
        self.encoder.requires_grad_(not frozen)
        self.encoder.train(self.training and not frozen)

    def save_backbone(self, path: str | Path) -> Path:
        """Write the backbone's weights (timm parameter names) to a safetensors file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            name: tensor.detach().cpu().contiguous() for name, tensor in self.encoder.state_dict().items()
        }
        save_file(
            state, str(path), metadata={"architecture": self.encoder.default_cfg.get("architecture", "")}
        )
        return path
