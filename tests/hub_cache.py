"""A local model-hub cache of random-initialised timm weights, so ``pre_trained=True`` works offline.

timm's ``pretrained=True`` downloads ``model.safetensors`` of the repository named by the
architecture's ``hf_hub_id`` (``timm/resnet18.a1_in1k``, ...). With ``HF_HUB_OFFLINE=1`` the hub
client reads the file from ``$HF_HOME/hub/models--timm--<name>/snapshots/<revision>/`` instead,
where ``refs/main`` names the revision. This module writes that layout for every timm network a
model builds, with weights drawn by timm's own initialisation: the defaults' loading path runs
for real, only the numbers are not ImageNet's.
"""

from __future__ import annotations

from pathlib import Path

import timm
from safetensors.torch import save_file
from torch import nn

REVISION = "0" * 40


def hub_ids(model: nn.Module) -> set[str]:
    """The hub repositories of every timm network inside ``model`` (its pretrained sources)."""
    ids = set()
    for module in model.modules():
        config = getattr(module, "pretrained_cfg", None)
        if isinstance(config, dict) and config.get("hf_hub_id"):
            ids.add(config["hf_hub_id"])
    return ids


def add_random_weights(hub: Path, hub_id: str) -> Path:
    """Write random-initialised weights of ``hub_id`` (``timm/<arch>.<tag>``) into the cache ``hub``."""
    name = hub_id.removeprefix("timm/")
    folder = hub / f"models--{hub_id.replace('/', '--')}"
    weights = folder / "snapshots" / REVISION / "model.safetensors"
    if not weights.is_file():
        network = timm.create_model(name, pretrained=False)
        weights.parent.mkdir(parents=True, exist_ok=True)
        state = {key: value.contiguous() for key, value in network.state_dict().items()}
        save_file(state, weights)
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / "main").write_text(REVISION)
    return weights
