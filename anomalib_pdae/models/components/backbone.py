"""timm backbones that return named intermediate feature maps and normalise their own input."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import nn

from .weights import create_timm_model


class Backbone(nn.Module):
    """A timm model cut at the requested layers.

    Takes RGB images in ``[0, 1]`` and normalises them with the mean and std of the backbone's
    own pretrained configuration, so callers never hard-code ImageNet constants. CNNs and
    transformer-family models (tokens reshaped to their grid, class token left out) alike.

    Args:
        name: timm architecture, optionally with a weights tag: ``"resnet18.tv_in1k"`` (torchvision's
            ImageNet weights), ``"cait_xxs24_384"`` (timm's default tag). The tag picks the
            pretrained checkpoint and its normalisation; with ``weights`` it names what the file holds.
        layers: module names to return, e.g. ``("layer2", "layer3")`` or ``("blocks.15",)``.
        pre_trained: load timm's pretrained weights (local hub cache, else one download attempt;
            offline, a :class:`WeightsError` says how to proceed instead of retrying).
        weights: a local weights file (safetensors or a torch state dict with timm's parameter
            names) for air-gapped machines; when given it is loaded whatever ``pre_trained`` says.
        trainable: keep gradients on (fine-tuning); by default the backbone is frozen.

    Example:
        >>> backbone = Backbone("resnet18", ["layer2", "layer3"], pre_trained=False)
        >>> [f.shape for f in backbone(torch.rand(1, 3, 256, 256))]
        [torch.Size([1, 128, 32, 32]), torch.Size([1, 256, 16, 16])]
    """

    def __init__(
        self,
        name: str,
        layers: Sequence[str],
        pre_trained: bool = True,
        weights: str | Path | None = None,
        trainable: bool = False,
    ) -> None:
        super().__init__()
        layers = [layers] if isinstance(layers, str) else list(layers)
        if not layers:
            msg = "Backbone needs at least one layer name in `layers`."
            raise ValueError(msg)
        self.name = name
        self.layers = layers
        indices = _feature_indices(name, layers)
        # timm returns maps in network order; remember how to put them in the order asked for.
        self._order = [sorted(indices).index(i) for i in indices]
        self.model = create_timm_model(
            name, pre_trained, weights, features_only=True, out_indices=sorted(indices)
        )
        self.channels: list[int] = [self.model.feature_info.channels()[i] for i in self._order]
        self.strides: list[int] = [self.model.feature_info.reduction()[i] for i in self._order]
        config = self.model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config["std"]).view(1, -1, 1, 1), persistent=False)
        self.requires_grad_(trainable)
        if not trainable:
            self.eval()

    def train(self, mode: bool = True) -> Backbone:
        """Keep a frozen backbone in eval mode (batch-norm statistics untouched)."""
        frozen = not any(p.requires_grad for p in self.parameters())
        return super().train(mode and not frozen)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``[0, 1]`` RGB images to the backbone's expected input distribution."""
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps ``(B, C_i, H_i, W_i)``, one per requested layer, in the order given."""
        features = self.model(self.normalize(images))
        return [features[i] for i in self._order]


def _feature_indices(name: str, layers: Sequence[str]) -> list[int]:
    """Positions of ``layers`` among the model's feature-info modules, with clear errors."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        msg = f"Unknown backbone {name!r}: not a timm architecture.{hint}"
        raise ValueError(msg)
    architecture, _, tag = name.partition(".")
    known = timm.list_pretrained(f"{architecture}.*")
    if tag and name not in known:  # timm.is_model checks the architecture only
        tags = ", ".join(entry.partition(".")[2] for entry in known) or "none"
        msg = f"Unknown weights tag {tag!r} for backbone {architecture!r}. timm's tags for it: {tags}."
        raise ValueError(msg)
    with torch.device("meta"):  # architecture only: no memory, no weights
        info = timm.create_model(name, pretrained=False).feature_info
    available = [entry["module"] for entry in info]
    missing = [layer for layer in layers if layer not in available]
    if missing:
        msg = (
            f"Backbone {name!r} has no feature layer named {', '.join(map(repr, missing))}. "
            f"Available layers: {', '.join(available)}."
        )
        raise ValueError(msg)
    return [available.index(layer) for layer in layers]
