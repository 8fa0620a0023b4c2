"""timm models with weights from a local file, the local hub cache or the hub, never a retry storm.

timm's own ``pretrained=True`` path asks the model hub for every file with five retries and
exponential back-off, so on a machine without a network it waits about a minute before failing
with ``LocalEntryNotFoundError``. Here the local cache is looked at first, the hub is asked once
with a short timeout, and what cannot be reached fails at once with a message that says how to
proceed. Each load logs one line saying which weights were used.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import timm
from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import EntryNotFoundError
from huggingface_hub.utils import get_session
from timm.models import get_pretrained_cfg, load_state_dict
from torch import nn

logger = logging.getLogger(__name__)

# Files timm looks for in a hub repository, in its order of preference.
HUB_FILES = ("model.safetensors", "pytorch_model.bin")
PROBE_TIMEOUT_S = 3.0


class WeightsError(RuntimeError):
    """Weights that cannot be loaded; the message names the file or backbone and what to do."""


class WeightsFileNotFoundError(WeightsError, FileNotFoundError):
    """The local weights file does not exist."""


def create_timm_model(
    name: str, pre_trained: bool = True, weights: str | Path | None = None, **kwargs
) -> nn.Module:
    """``timm.create_model`` with weights from ``weights``, else timm's pretrained ones, else none.

    Args:
        name: timm architecture, optionally with a weights tag (``"resnet18.tv_in1k"``).
        pre_trained: load timm's pretrained weights (local hub cache first, then the hub).
        weights: a local weights file (safetensors or a torch state dict with timm's parameter
            names); when given it is loaded whatever ``pre_trained`` says.
        **kwargs: passed to ``timm.create_model`` (``features_only``, ``out_indices``...).

    Raises:
        WeightsError: the file is missing, unreadable or for another architecture, or the
            pretrained weights are neither cached nor reachable.

    Example:
        >>> model = create_timm_model("resnet18", pre_trained=False)
        >>> type(model).__name__
        'ResNet'
    """
    if weights is not None:
        return _from_file(name, Path(weights).expanduser(), kwargs)
    if not pre_trained:
        return timm.create_model(name, pretrained=False, **kwargs)
    hub_file = pretrained_file(name)
    if hub_file is None:  # weights hosted outside the hub: timm's own download path
        logger.info("weights: %s, timm pretrained", name)
        return timm.create_model(name, pretrained=True, **kwargs)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(hub_file)}, **kwargs)
    logger.info("weights: %s from %s", name, hub_file)
    return model


def pretrained_file(name: str) -> Path | None:
    """Local path of timm's pretrained weights for ``name``, downloaded if the hub answers.

    ``None`` when timm keeps these weights somewhere other than the hub.

    Raises:
        WeightsError: not in the local cache and the hub is offline or cannot be reached.
    """
    config = get_pretrained_cfg(name)
    if config is None or not config.hf_hub_id:
        return None
    repo_id, _, revision = config.hf_hub_id.partition("@")
    revision = revision or None
    files = (config.hf_hub_filename,) if config.hf_hub_filename else HUB_FILES
    for filename in files:
        cached = try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(cached, str):
            return Path(cached)
    if _hub_offline() or not hub_reachable():
        msg = (
            f"No pretrained weights for backbone {name!r} (weights tag {config.tag or 'default'!r}, "
            f"hub repository {repo_id}): they are not in the local cache and the model hub "
            f"({constants.ENDPOINT}) cannot be reached. Pass a local weights file with weights=PATH "
            "(safetensors or a torch state dict with timm's parameter names), or pre_trained=False "
            "for random initialisation."
        )
        raise WeightsError(msg)
    for filename in files:
        try:
            return Path(hf_hub_download(repo_id, filename, revision=revision))
        except EntryNotFoundError:
            continue
    msg = f"The hub repository {repo_id} of backbone {name!r} holds none of {', '.join(files)}."
    raise WeightsError(msg)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the model hub answers one request within ``timeout`` seconds (any HTTP status)."""
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as error:  # DNS, refused, timeout, proxy, TLS: all mean "cannot be reached"
        logger.debug("model hub %s not reachable: %s", constants.ENDPOINT, error)
        return False
    return True


def _hub_offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE only once, when it is imported.
    flag = os.environ.get("HF_HUB_OFFLINE", "").upper()
    return constants.HF_HUB_OFFLINE or flag in {"1", "ON", "YES", "TRUE"}


def _from_file(name: str, path: Path, kwargs: dict) -> nn.Module:
    if not path.is_file():
        msg = f"Backbone weights file not found: {path}"
        raise WeightsFileNotFoundError(msg)
    try:
        load_state_dict(str(path))
    except Exception as error:  # safetensors, pickle and zip errors alike: the file is unusable
        msg = f"Backbone weights file {path} cannot be read as safetensors or a torch state dict: {error}"
        raise WeightsError(msg) from error
    try:
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    except RuntimeError as error:  # torch's load_state_dict: missing, unexpected or mis-shaped keys
        detail = " ".join(str(error).split())[:300]
        msg = f"Backbone weights file {path} does not fit backbone {name!r}: {detail}"
        raise WeightsError(msg) from error
    logger.info("weights: %s from %s", name, path)
    return model
