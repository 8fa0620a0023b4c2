"""OpenVINO compression (FP16, INT8 weights, INT8 PTQ) of Ldknn, Pdae and Ulsad on KolektorSDD.

Each model is fitted once on the KolektorSDD training images with real ImageNet weights (the
settings of the demo and of the KolektorSDD tests), exported to ONNX, converted to OpenVINO and
compressed each way — INT8_PTQ, which the exports refuse, included (NNCF calibrated on the
training images), so the table shows why it is refused. Per row: image and pixel AUROC on the 149 test images
(the exported model's normalised outputs; masks resized to the map, nearest) and ms per image at
batch 1 and 8 (median of 10 runs after 3 warm-ups, OpenVINO CPU in FP32 precision except where
compressed), with torch FP32 in the same process as the reference.

Usage: ``python benchmarks/compression.py [--data-root ../shared/data] [--weights-dir ../shared/weights]``
Writes ``benchmarks/results/compression.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov
import torch
from anomalib.data import MVTecAD
from anomalib.deploy import CompressionType
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from torch.nn.functional import interpolate

from anomalib_pdae import Ldknn, Pdae, Ulsad
from anomalib_pdae.deploy import EXACT_CPU_CONFIG
from anomalib_pdae.models.components.compression import REFUSED, compress
from benchmarks.metrics import auroc

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LAYERS = ["blocks.2", "blocks.4"]
TYPES = (None, CompressionType.FP16, CompressionType.INT8, CompressionType.INT8_PTQ)


def _models(weights: Path) -> dict[str, tuple[Callable, dict, dict]]:
    """Model, datamodule and trainer arguments per model: the demo's and the KolektorSDD tests'."""
    mobilenet = weights / "mobilenetv2_100.tv_in1k.safetensors"
    efficientnet = weights / "tf_efficientnet_lite0.in1k.safetensors"
    return {
        "Ldknn (demo: 128 px, 10% bank)": (
            lambda: Ldknn(
                backbone="mobilenetv2_100",
                layers=LAYERS,
                weights=mobilenet,
                coreset_ratio=0.1,
                pre_processor=Ldknn.configure_pre_processor(image_size=(128, 128)),
                visualizer=False,
            ),
            {},
            {},
        ),
        "Pdae (MobileNetV2 + EfficientNet-Lite0, 256×96)": (
            lambda: Pdae(
                backbones=[("mobilenetv2_100", LAYERS), ("tf_efficientnet_lite0", LAYERS)],
                weights=[mobilenet, efficientnet],
                image_size=(256, 96),
                hidden_widths=[64],
                lr_milestones=[],
                visualizer=False,
            ),
            {},
            {"max_epochs": 2, "limit_train_batches": 16},
        ),
        "Ulsad (MobileNetV2, 160×64)": (
            lambda: Ulsad(
                backbone="mobilenetv2_100",
                layers=LAYERS,
                weights=mobilenet,
                feature_dim=32,
                image_size=(160, 64),
                lr=2e-3,
                visualizer=False,
            ),
            {"val_split_mode": "from_train", "val_split_ratio": 0.1},
            {"max_epochs": 4, "limit_train_batches": 25},
        ),
    }


def _median_ms(run: Callable[[np.ndarray], object], images: np.ndarray) -> float:
    for _ in range(3):
        run(images)
    times = []
    for _ in range(10):
        start = time.perf_counter()
        run(images)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / len(images)


def _scores(run: Callable[[np.ndarray], tuple], datamodule: MVTecAD) -> tuple[float, float]:
    """Image and pixel AUROC (percent) of ``run`` (images → scores, maps) on the test split."""
    scores, labels, maps, masks = [], [], [], []
    for batch in datamodule.test_dataloader():
        score, anomaly_map = run(batch.image.numpy())
        anomaly_map = torch.as_tensor(anomaly_map).reshape(len(batch.image), -1, *anomaly_map.shape[-2:])
        scores.append(torch.as_tensor(score).reshape(-1))
        labels.append(batch.gt_label)
        maps.append(anomaly_map.flatten())
        mask = interpolate(batch.gt_mask[:, None].float(), size=anomaly_map.shape[-2:], mode="nearest")
        masks.append(mask.flatten())
    return auroc(torch.cat(scores), torch.cat(labels)), auroc(torch.cat(maps), torch.cat(masks))


def _row(label: str, run: Callable, datamodule: MVTecAD, sample: np.ndarray) -> dict:
    image, pixel = _scores(run, datamodule)
    row = {"precision": label, "image_auroc": image, "pixel_auroc": pixel}
    row |= {f"ms_batch{n}": _median_ms(run, sample[:n]) for n in (1, 8)}
    print(row, flush=True)
    return row


def _int8_ptq(model: ov.Model, datamodule: MVTecAD) -> ov.Model:
    """NNCF post-training quantisation calibrated on all training images (refused by the exports)."""
    import nncf

    loader = datamodule.train_dataloader()
    return nncf.quantize(model, nncf.Dataset(loader, lambda batch: batch.image), subset_size=len(loader))


def _openvino(model, compression_type: CompressionType | None, datamodule: MVTecAD, folder: Path) -> Callable:
    """The model exported and compressed the way ``to_openvino`` does, refusal checks bypassed."""
    onnx = model.to_onnx(folder)
    ov_model = ov.convert_model(onnx)
    if compression_type == CompressionType.INT8:
        ov_model = compress(ov_model, compression_type)
    elif compression_type == CompressionType.INT8_PTQ:
        ov_model = _int8_ptq(ov_model, datamodule)
    path = folder / f"{compression_type or 'fp32'}.xml"
    ov.save_model(ov_model, path, compress_to_fp16=compression_type == CompressionType.FP16)
    compiled = ov.Core().compile_model(path, "CPU", EXACT_CPU_CONFIG)

    def run(images: np.ndarray) -> tuple:
        outputs = compiled(images)
        return outputs["pred_score"], outputs["anomaly_map"]

    return run


def measure(name: str, build: Callable, data_args: dict, trainer_args: dict, data_root: Path) -> list[dict]:
    """Fit one model, then one row per precision."""
    seed_everything(0)
    datamodule = MVTecAD(
        root=data_root,
        category="kolektorsdd",
        train_batch_size=8,
        eval_batch_size=8,
        num_workers=0,
        **data_args,
    )
    model = build()
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(default_root_dir=tmp, logger=False, enable_progress_bar=False, **trainer_args)
        engine.fit(model, datamodule=datamodule)
    model.eval()
    datamodule.setup("test")
    sample = next(iter(datamodule.test_dataloader())).image.numpy()

    def run_torch(images: np.ndarray) -> tuple:
        with torch.no_grad():
            out = model(torch.from_numpy(images))
        return out.pred_score.numpy(), out.anomaly_map.numpy()

    rows = [_row("torch FP32", run_torch, datamodule, sample)]
    for compression_type in TYPES:
        with tempfile.TemporaryDirectory() as tmp:
            run = _openvino(model, compression_type, datamodule, Path(tmp))
            label = f"OpenVINO {(compression_type or 'fp32').upper()}"
            refused = compression_type in REFUSED
            rows.append(_row(label + (" (refused by export)" if refused else ""), run, datamodule, sample))
    return [{"model": name} | row for row in rows]


def write(rows: list[dict], header: str) -> None:
    """``compression.md`` (one table) and ``compression.json`` (the rows)."""
    columns = ["model", "precision", "image_auroc", "pixel_auroc", "ms_batch1", "ms_batch8"]
    lines = [
        "| model | precision | image AUROC | pixel AUROC | ms/image, batch 1 | ms/image, batch 8 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        values = [row[c] if isinstance(row[c], str) else f"{row[c]:.2f}" for c in columns]
        lines.append("| " + " | ".join(values) + " |")
    title = "# OpenVINO compression on KolektorSDD\n\n"
    (RESULTS / "compression.md").write_text(title + header + "\n\n" + "\n".join(lines) + "\n")
    (RESULTS / "compression.json").write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--weights-dir", type=Path, default=REPO.parent / "shared" / "weights")
    args = parser.parse_args()
    rows = []
    for name, (build, data_args, trainer_args) in _models(args.weights_dir).items():
        rows += measure(name, build, data_args, trainer_args, args.data_root)
    header = (
        f"Command: `python benchmarks/compression.py`. Machine: {platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, OpenVINO {ov.__version__}, "
        f"load average at the end {os.getloadavg()[0]:.1f}.\n\n" + __doc__.split("\n\n")[1].replace("\n", " ")
    )
    write(rows, header)


if __name__ == "__main__":
    main()
