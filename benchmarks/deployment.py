"""One deployment table: latency, throughput, memory and accuracy of exported models on KolektorSDD.

Each model is fitted once on the KolektorSDD training images with real ImageNet weights, then
scored by torch and by its OpenVINO export at FP32, FP16, INT8 (8-bit weights) and INT8_PTQ (NNCF
calibrated on the training images; the exports refuse it, the rows show why). Image and pixel
AUROC are on the 149 test images (the export's normalised outputs; masks resized to the map,
nearest). Latency is ms per image at batch 1, 2 and 8 (an export with a fixed batch: at that
batch only), median of 20 runs after 5 warm-ups on test images; each OpenVINO model is timed in a
fresh process that only loads and runs it (CPU, FP32 inference precision), whose peak RSS
(``VmHWM``) is the memory column. Torch rows are timed in this process. Baselines in the same
run: anomalib's Patchcore (its defaults, MobileNetV2, 256 px) exported at a 1% coreset and with
a bank as large as Ldknn's (random rows, timing only), and the matmul floor of Ldknn's exact
search (queries × bank rows × D at this machine's torch matmul rate, in a fresh process).

Usage: ``python benchmarks/deployment.py [--only NAME ...]``; data and weights from the shared folder.
Writes ``benchmarks/results/deployment.md`` and ``.json``; rows of models not run again are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov
import torch
from anomalib.data import MVTecAD
from anomalib.deploy import CompressionType
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_pdae import Ldknn, Pdae, Ulsad
from anomalib_pdae.models.components.compression import REFUSED
from benchmarks.deployment_measure import (
    child_timing,
    export,
    interleaved_ms,
    matmul_floor,
    openvino_run,
    torch_timing,
)
from benchmarks.markdown import pipe_table
from benchmarks.metrics import aurocs, torch_run
from benchmarks.runner import PATCHCORE_ENV
from benchmarks.settings import SHARED, WEIGHTS_FILES

RESULTS = Path(__file__).resolve().parent / "results"
DATA = SHARED / "data"
LAYERS = ["blocks.2", "blocks.4"]
MOBILENET = SHARED / "weights" / WEIGHTS_FILES["mobilenetv2_100"]
TYPES = (None, CompressionType.FP16, CompressionType.INT8, CompressionType.INT8_PTQ)
# The goal's contenders: their FP32 exports are timed again in turn, GOAL_ROUNDS fresh processes each.
PATCHCORE_1 = "anomalib Patchcore (1% bank)"
GOAL = ("Ldknn approximate (1% bank)", "Ldknn exact (1% bank)", PATCHCORE_1)
GOAL_ROUNDS = 7
INTERLEAVED = f"OpenVINO FP32, {GOAL_ROUNDS} interleaved processes"


def _ldknn(coreset_ratio: float = 0.1) -> Ldknn:
    return Ldknn(
        backbone="mobilenetv2_100",
        layers=LAYERS,
        weights=MOBILENET,
        coreset_ratio=coreset_ratio,
        visualizer=False,
    )


def _pdae() -> Pdae:
    """The KolektorSDD test's Pdae: the strips' aspect ratio kept, a short CPU training."""
    return Pdae(
        backbones=[("mobilenetv2_100", LAYERS), ("tf_efficientnet_lite0", LAYERS)],
        weights=[MOBILENET, SHARED / "weights" / WEIGHTS_FILES["tf_efficientnet_lite0"]],
        image_size=(256, 96),
        hidden_widths=[64],
        lr_milestones=[],
        visualizer=False,
    )


def _ulsad() -> Ulsad:
    """The KolektorSDD test's Ulsad (160×64, about 100 training steps)."""
    return Ulsad(
        backbone="mobilenetv2_100",
        layers=LAYERS,
        weights=MOBILENET,
        feature_dim=32,
        image_size=(160, 64),
        lr=2e-3,
        visualizer=False,
    )


# The approximate search at a 1% bank: the fastest setting with recall >= 0.95 of the exact 1-NN on
# training patches (`python benchmarks/approximate_search.py --coreset-ratio 0.01`).
ONE_PERCENT_SEARCH = {"search": "approximate", "projection_dim": 128, "candidates": 4}

# name: (model, datamodule arguments, trainer arguments, torch-side changes after fitting)
SETTINGS: dict[str, tuple[Callable, dict, dict, dict]] = {
    "Ldknn exact (10% bank)": (_ldknn, {}, {}, {}),
    "Ldknn approximate (10% bank)": (_ldknn, {}, {}, {"search": "approximate"}),
    # Patchcore's practical bank size: what LDKNN's scoring costs when its bank is as small.
    "Ldknn exact (1% bank)": (lambda: _ldknn(0.01), {}, {}, {}),
    "Ldknn approximate (1% bank)": (lambda: _ldknn(0.01), {}, {}, ONE_PERCENT_SEARCH),
    "Pdae (MobileNetV2 + EfficientNet-Lite0, 256×96)": (
        _pdae,
        {},
        {"max_epochs": 2, "limit_train_batches": 16},
        {},
    ),
    "Ulsad (MobileNetV2, 160×64)": (
        _ulsad,
        {"val_split_mode": "from_train", "val_split_ratio": 0.1},
        {"max_epochs": 4, "limit_train_batches": 25},
        {},
    ),
}


def _datamodule(**kwargs: object) -> MVTecAD:
    datamodule = MVTecAD(
        root=DATA,
        category="kolektorsdd",
        train_batch_size=8,
        eval_batch_size=8,
        num_workers=0,
        seed=0,
        **kwargs,
    )
    datamodule.setup()
    return datamodule


def measure(
    name: str, build: Callable, data_args: dict, trainer_args: dict, changes: dict, keep: Path
) -> list[dict]:
    """Fit one model, then one row for torch and one per OpenVINO precision.

    A goal model's FP32 export and the test images are copied to ``keep``.
    """
    seed_everything(0)
    datamodule = _datamodule(**data_args)
    model = build()
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(default_root_dir=tmp, logger=False, enable_progress_bar=False, **trainer_args)
        engine.fit(model, datamodule=datamodule)
    if changes:
        model.model.rescore(**changes)
    model.eval()
    images = next(iter(datamodule.test_dataloader())).image.numpy()

    rows = [{"precision": "torch FP32"} | aurocs(torch_run(model), datamodule) | torch_timing(model, images)]
    print(name, rows[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "images.npy", images)
        for compression_type in TYPES:
            path = export(model, compression_type, datamodule, Path(tmp) / str(compression_type))
            if name in GOAL and compression_type is None:
                _keep(path, keep / f"{GOAL.index(name)}.xml", Path(tmp) / "images.npy")
            label = f"OpenVINO {(compression_type or 'fp32').upper()}"
            label += " (refused by export)" if compression_type in REFUSED else ""
            accuracy = aurocs(openvino_run(path), datamodule)
            rows.append({"precision": label} | accuracy | child_timing(path, Path(tmp) / "images.npy"))
            print(name, rows[-1], flush=True)
    return [{"model": name} | row for row in rows]


def paper_pdae() -> list[dict]:
    """Pdae with the paper's backbones (DenseNet201 + CaiT-XXS24-384), 384 px, random weights: timing."""
    seed_everything(0)
    datamodule = _datamodule()
    model = Pdae(pre_trained=False, visualizer=False)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(
            default_root_dir=tmp,
            logger=False,
            enable_progress_bar=False,
            max_epochs=1,
            limit_train_batches=1,
            limit_val_batches=1,
        )
        engine.fit(model, datamodule=datamodule)
        images = next(iter(datamodule.test_dataloader())).image.numpy()
        np.save(Path(tmp) / "images.npy", images)
        path = export(model.eval(), None, datamodule, Path(tmp) / "fp32")
        row = {"precision": "OpenVINO FP32 (random weights)"} | child_timing(path, Path(tmp) / "images.npy")
    return [{"model": "Pdae, the paper's backbones at 384 px"} | row]


def _keep(xml: Path, target: Path, images: Path) -> None:
    """Copy an OpenVINO model (``.xml`` and ``.bin``) and the test images beside it."""
    for suffix in (".xml", ".bin"):
        shutil.copy(xml.with_suffix(suffix), target.with_suffix(suffix))
    shutil.copy(images, target.parent / "images.npy")


def patchcore_child(output: Path) -> None:
    """In a process started with :data:`PATCHCORE_ENV`: Patchcore at 1% and with Ldknn's bank size.

    Writes its rows to ``output``; the 1% export is copied beside it as a goal model.
    """
    from anomalib.models import Patchcore
    from safetensors.torch import load_file

    seed_everything(0)
    datamodule = _datamodule()
    model = Patchcore(
        backbone="mobilenetv2_100",
        layers=LAYERS,
        coreset_sampling_ratio=0.01,
        pre_trained=False,
        pre_processor=Patchcore.configure_pre_processor((256, 256), None),
        visualizer=False,
    )
    model.model.feature_extractor.feature_extractor.load_state_dict(load_file(MOBILENET), strict=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(default_root_dir=tmp, logger=False, enable_progress_bar=False)
        engine.fit(model, datamodule=datamodule)
        images = Path(tmp) / "images.npy"
        np.save(images, next(iter(datamodule.test_dataloader())).image.numpy())
        path = Path(model.to_openvino(Path(tmp) / "one_percent"))
        accuracy = aurocs(openvino_run(path), datamodule)
        rows.append({"model": PATCHCORE_1, "precision": "OpenVINO FP32"} | accuracy)
        rows[-1] |= child_timing(path, images)
        _keep(path, output.parent / f"{GOAL.index(PATCHCORE_1)}.xml", images)
        bank = model.model.memory_bank
        model.model.memory_bank = torch.randn(25600, bank.shape[1]) * bank.std() + bank.mean()
        path = Path(model.to_openvino(Path(tmp) / "equal_bank"))
        rows.append(
            {"model": "anomalib Patchcore (25 600 random rows, timing only)", "precision": "OpenVINO FP32"}
        )
        rows[-1] |= child_timing(path, images)
    output.write_text(json.dumps(rows))


def patchcore(keep: Path) -> list[dict]:
    """:func:`patchcore_child` in its own process, with the allocator setting Patchcore needs."""
    output = keep / "patchcore_rows.json"
    command = [sys.executable, "-m", "benchmarks.deployment", "--patchcore-child", str(output)]
    subprocess.run(command, check=True, env=os.environ | PATCHCORE_ENV)
    return json.loads(output.read_text())


def goal_rows(keep: Path) -> list[dict]:
    """The goal models timed in turn (:func:`interleaved_ms`), if this run exported all of them."""
    exports = {name: keep / f"{index}.xml" for index, name in enumerate(GOAL)}
    if not all(path.is_file() for path in exports.values()):
        return []
    found = interleaved_ms(exports, keep / "images.npy", GOAL_ROUNDS)
    return [
        {"model": name, "precision": INTERLEAVED, "ms_batch2": float(np.median(ms)), "rounds_ms": ms}
        for name, ms in found.items()
    ]


COLUMNS = {
    "model": "model",
    "precision": "precision",
    "image_auroc": "image AUROC",
    "pixel_auroc": "pixel AUROC",
    "ms_batch1": "ms/image, batch 1",
    "ms_batch2": "ms/image, batch 2",
    "ms_batch8": "ms/image, batch 8",
    "images_per_second": "images/s (batch 8)",
    "peak_mb": "peak RSS MB",
}


def write(rows: list[dict]) -> None:
    """``deployment.md`` (one table, the goal row) and ``deployment.json`` (the rows), after each model."""
    rows.sort(
        key=lambda row: list(SETTINGS).index(row["model"]) if row["model"] in SETTINGS else len(SETTINGS)
    )
    for row in rows:
        if "ms_batch8" in row:
            row["images_per_second"] = 1000 / row["ms_batch8"]
    table = [
        [row[key] if isinstance(row.get(key), str) else _number(row.get(key)) for key in COLUMNS]
        for row in rows
    ]
    header = (
        f"Command: `python benchmarks/deployment.py`. Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, OpenVINO {ov.__version__}, load average at the end "
        f"{os.getloadavg()[0]:.1f}.\n\n" + " ".join(__doc__.split("\n\n")[1].split())
    )
    lines = pipe_table(list(COLUMNS.values()), table)
    text = "# Deployment on KolektorSDD\n\n" + header + "\n\n" + "\n".join(lines) + "\n"
    (RESULTS / "deployment.md").write_text(text + _goal(rows))
    (RESULTS / "deployment.json").write_text(json.dumps(rows, indent=1) + "\n")


def _goal(rows: list[dict]) -> str:
    """The goal, per Ldknn approximate bank size: its OpenVINO latency against Patchcore 1%'s."""
    found = {(r["model"], r["precision"]): r for r in rows if r.get("ms_batch2")}
    theirs = found.get((PATCHCORE_1, "OpenVINO FP32"))
    if theirs is None:
        return ""
    lines = [
        "",
        "Goal: Ldknn approximate OpenVINO latency ≤ anomalib Patchcore 1% OpenVINO latency, at LDKNN's "
        "accuracy; per image at batch 2 (anomalib's Patchcore exports with a fixed batch of 2):",
        "",
    ]
    for bank in ("10% bank", "1% bank"):
        ours = found.get((f"Ldknn approximate ({bank})", "OpenVINO FP32"))
        if ours is not None:
            lines.append(f"- {bank}: " + _verdict(ours, theirs, ours, theirs))
    timed = [found.get((name, INTERLEAVED)) for name in GOAL]
    if all(timed):
        lines += [
            "",
            f"The 1% exports timed again in turn, {GOAL_ROUNDS} fresh processes each (median; every "
            "round in `deployment.json`):",
            "",
        ]
        for name, ours in zip(GOAL[:-1], timed, strict=False):
            wins = sum(a <= b for a, b in zip(ours["rounds_ms"], timed[-1]["rounds_ms"], strict=True))
            accuracy = found[(name, "OpenVINO FP32")]
            verdict = _verdict(ours, timed[-1], accuracy, theirs)
            lines.append(f"- {name}: {verdict[:-1]}; as fast or faster in {wins} of {GOAL_ROUNDS} rounds.")
    return "\n".join(lines) + "\n"


def _verdict(ours: dict, theirs: dict, our_accuracy: dict, their_accuracy: dict) -> str:
    met = "met" if ours["ms_batch2"] <= theirs["ms_batch2"] else "**not met**"
    return (
        f"{ours['ms_batch2']:.1f} ms against {theirs['ms_batch2']:.1f} ms, {met} (image AUROC "
        f"{our_accuracy['image_auroc']:.2f} against {their_accuracy['image_auroc']:.2f})."
    )


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="run only the rows whose model starts with one of these")
    parser.add_argument("--patchcore-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.patchcore_child:
        patchcore_child(args.patchcore_child)
        return
    path = RESULTS / "deployment.json"
    rows = json.loads(path.read_text()) if path.is_file() else []

    def wanted(name: str) -> bool:
        return not args.only or any(name.startswith(prefix) for prefix in args.only)

    with tempfile.TemporaryDirectory() as keep:
        for name, setting in SETTINGS.items():
            if wanted(name):
                rows = [r for r in rows if r["model"] != name] + measure(name, *setting, Path(keep))
                write(rows)
        extra = {
            "Pdae, the paper's": paper_pdae,
            "anomalib Patchcore": lambda: patchcore(Path(keep)),
            "matmul floor": lambda: matmul_floor(1024, 25600, 512),
        }
        for prefix, run in extra.items():
            if wanted(prefix):
                rows = [r for r in rows if not r["model"].startswith(prefix)] + run()
        timed = goal_rows(Path(keep))
        if timed:
            rows = [r for r in rows if r["precision"] != INTERLEAVED] + timed
    write(rows)


if __name__ == "__main__":
    main()
