"""Each of the four models in a small random-initialised configuration, for fast workflow tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anomalib.models import AnomalibModule

from anomalib_pdae import Ldknn, Pdae, Reb, Ulsad

SIZE = 64
MODELS = ("Ldknn", "Pdae", "Reb", "Ulsad")
_BACKBONE = {"backbone": "resnet18", "pre_trained": False}
_ARGS: dict[str, dict[str, Any]] = {
    "Ldknn": {**_BACKBONE, "k": 3, "embedding_dim": 32},
    "Pdae": {
        "backbones": [("resnet18", ["layer1", "layer2"])],
        "pre_trained": False,
        "hidden_widths": [32],
        "embedding_dim": 64,
        "lr_milestones": [],
    },
    # one update of two batches of 2 images (14 synthetic images each), then the bank
    "Reb": {
        **_BACKBONE,
        "k": 3,
        "embedding_dim": 32,
        "num_updates": 1,
        "images_per_update": 28,
        "freeze_updates": 0,
        "saliency": "image",
    },
    "Ulsad": {**_BACKBONE, "feature_dim": 32},
}
_CLASSES = {"Ldknn": Ldknn, "Pdae": Pdae, "Reb": Reb, "Ulsad": Ulsad}


def small_model(name: str, tmp: Path | None = None, size: int = SIZE, **kwargs: Any) -> AnomalibModule:
    """``name`` with a ResNet-18 (random weights) at ``size`` px; ``kwargs`` override the arguments.

    Reb writes its fine-tuned backbone under ``tmp`` when given.
    """
    model_class = _CLASSES[name]
    args = dict(_ARGS[name])
    if name == "Reb" and tmp is not None:
        args["backbone_path"] = tmp / "reb_backbone.safetensors"
    args |= {"visualizer": False} | kwargs
    if name in ("Pdae", "Ulsad"):
        return model_class(**args, image_size=(size, size))
    return model_class(**args, pre_processor=model_class.configure_pre_processor((size, size)))
