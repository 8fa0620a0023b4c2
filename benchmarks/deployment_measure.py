"""How one model is measured for the deployment table: accuracy, torch and OpenVINO latency, memory.

Latency is ms per image, median of :data:`RUNS` runs after :data:`WARMUP` on test images; an
OpenVINO model is timed in a fresh process that only loads and runs it, whose peak RSS
(``VmHWM``) is the memory figure.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov
import torch
from anomalib.data import MVTecAD
from anomalib.deploy import CompressionType

from anomalib_pdae.models.components.compression import compress

WARMUP, RUNS = 5, 20
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}

# Loads one exported model, times batches of 1, 2 and 8 test images, prints ms per image and peak RSS.
TIMING_PROCESS = """\
import json, re, statistics, sys, time
import numpy as np, openvino as ov
compiled = ov.Core().compile_model(sys.argv[1], "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
images, warmup, runs = np.load(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
batch = compiled.input(0).get_partial_shape()[0]
result = {}
sizes = [int(n) for n in sys.argv[5].split(",")] if len(sys.argv) > 5 else (1, 2, 8)
for n in sizes if batch.is_dynamic else (batch.get_length(),):
    for _ in range(warmup):
        compiled(images[:n])
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        compiled(images[:n])
        times.append(time.perf_counter() - start)
    result[f"ms_batch{n}"] = 1000 * statistics.median(times) / n
# VmHWM starts afresh at exec; ru_maxrss would still hold the forking parent's size
status = open("/proc/self/status").read()
result["peak_mb"] = int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) / 1024
print(json.dumps(result))
"""


def median_ms(call: Callable[[], object]) -> float:
    """Median milliseconds of ``call()`` over :data:`RUNS` runs after :data:`WARMUP`."""
    for _ in range(WARMUP):
        call()
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def torch_timing(model: torch.nn.Module, images: np.ndarray) -> dict:
    """Milliseconds per image of ``model`` at batch 1, 2 and 8."""
    with torch.no_grad():
        return {
            f"ms_batch{n}": median_ms(lambda n=n: model(torch.from_numpy(images[:n]))) / n for n in (1, 2, 8)
        }


def child_timing(xml: Path, images: Path, batches: tuple[int, ...] = (1, 2, 8)) -> dict:
    """Milliseconds per image and peak RSS of the export at ``xml``, in a fresh process.

    ``batches``: the batch sizes timed when the export's batch is dynamic.
    """
    command = [sys.executable, "-c", TIMING_PROCESS, str(xml), str(images), str(WARMUP), str(RUNS)]
    command.append(",".join(map(str, batches)))
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def interleaved_ms(exports: dict[str, Path], images: Path, rounds: int) -> dict[str, list[float]]:
    """Ms per image at batch 2 of each export, timed in turn in fresh processes, ``rounds`` times.

    On a shared 2-core machine one process's median moves by up to a quarter from one process
    to the next; alternating the models spreads that over all of them alike.
    """
    found: dict[str, list[float]] = {name: [] for name in exports}
    for _ in range(rounds):
        for name, xml in exports.items():
            found[name].append(child_timing(xml, images, batches=(2,))["ms_batch2"])
    return found


def _int8_ptq(model: ov.Model, datamodule: MVTecAD) -> ov.Model:
    """NNCF post-training quantisation calibrated on all training images (refused by the exports)."""
    import nncf

    loader = datamodule.train_dataloader()
    return nncf.quantize(model, nncf.Dataset(loader, lambda batch: batch.image), subset_size=len(loader))


def export(model, compression_type: CompressionType | None, datamodule: MVTecAD, folder: Path) -> Path:
    """The model exported and compressed as ``to_openvino`` does; INT8_PTQ done directly."""
    ov_model = ov.convert_model(model.to_onnx(folder))
    if compression_type == CompressionType.INT8:
        ov_model = compress(ov_model, compression_type)
    elif compression_type == CompressionType.INT8_PTQ:
        ov_model = _int8_ptq(ov_model, datamodule)
    path = folder / f"{compression_type or 'fp32'}.xml"
    ov.save_model(ov_model, path, compress_to_fp16=compression_type == CompressionType.FP16)
    return path


def openvino_run(path: Path) -> Callable[[np.ndarray], tuple]:
    """Scores and maps of the export; an export with a fixed batch gets padded slices of it."""
    compiled = ov.Core().compile_model(path, "CPU", OPENVINO_CONFIG)
    batch = compiled.input(0).get_partial_shape()[0]
    size = None if batch.is_dynamic else batch.get_length()

    def run(images: np.ndarray) -> tuple:
        if size is None:
            outputs = compiled(images)
            return outputs["pred_score"], outputs["anomaly_map"]
        scores, maps = [], []
        for start in range(0, len(images), size):
            part = images[start : start + size]
            padded = np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)])
            outputs = compiled(padded)
            scores.append(outputs["pred_score"].reshape(size, -1)[: len(part)])
            maps.append(outputs["anomaly_map"][: len(part)])
        return np.concatenate(scores), np.concatenate(maps)

    return run


def matmul_floor(queries: int, rows: int, width: int) -> list[dict]:
    """The time of one image's distance matmul of the exact search: (queries × D) @ (D × rows).

    Timed in a fresh process: after OpenVINO has run here its thread pool competes with torch's.
    """
    code = (
        "import sys, torch; from benchmarks.deployment_measure import median_ms; "
        "q, r, w = map(int, sys.argv[1:]); a, b = torch.randn(q, w), torch.randn(w, r); "
        "print(median_ms(lambda: a @ b))"
    )
    command = [sys.executable, "-c", code, str(queries), str(rows), str(width)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    label = f"matmul floor of Ldknn's exact search ({queries} × {width}) @ ({width} × {rows})"
    return [{"model": label, "precision": "torch FP32", "ms_batch1": float(output.strip().splitlines()[-1])}]
