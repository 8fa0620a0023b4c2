"""Run an exported ``.xml`` / ``.onnx`` file with OpenVINO at the precision it was exported in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from anomalib_pdae.deploy import EXACT_CPU_CONFIG


def run_exported(path: Path, images: torch.Tensor, names=("pred_score", "anomaly_map")) -> dict:
    """The named outputs of the exported model at ``path`` for ``images`` (FP32 on every CPU)."""
    import openvino

    compiled = openvino.Core().compile_model(str(path), "CPU", EXACT_CPU_CONFIG)
    outputs = compiled(images.numpy())
    return {name: np.asarray(next(v for k, v in outputs.items() if name in k.get_names())) for name in names}
