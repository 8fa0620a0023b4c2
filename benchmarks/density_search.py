"""Ldknn's local densities found exactly or approximately at fit time, on KolektorSDD.

Two fits of the same model (MobileNetV2 ``blocks.2`` + ``blocks.4`` with real ImageNet weights,
256×256, 10% coreset, same seed, hence the same coreset) that differ only in
``density_search``: the seconds the densities took (the model's own stage timer), the whole
``Engine.fit``, and image / pixel AUROC of the torch model on the 149 test images (raw scores;
masks resized to the map, nearest).

Usage: ``python benchmarks/density_search.py``; writes ``benchmarks/results/density_search.md``.
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_pdae import Ldknn
from benchmarks.markdown import pipe_table
from benchmarks.metrics import aurocs, torch_run
from benchmarks.settings import SHARED, WEIGHTS_FILES
from benchmarks.timing import timed

RESULTS = Path(__file__).resolve().parent / "results"


def fit_and_score(density_search: str) -> list[str]:
    """One row: densities seconds, fit seconds, image and pixel AUROC."""
    seed_everything(0)
    datamodule = MVTecAD(
        root=SHARED / "data", category="kolektorsdd", train_batch_size=8, eval_batch_size=8, num_workers=0
    )
    model = Ldknn(
        backbone="mobilenetv2_100",
        layers=["blocks.2", "blocks.4"],
        weights=SHARED / "weights" / WEIGHTS_FILES["mobilenetv2_100"],
        coreset_ratio=0.1,
        density_search=density_search,
        post_processor=False,
        evaluator=False,
        visualizer=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(default_root_dir=tmp, logger=False, enable_progress_bar=False, limit_val_batches=0)
        _, fit_seconds = timed(engine.fit, model, datamodule=datamodule)
    densities = model.model.timer.seconds["statistics"]
    accuracy = aurocs(torch_run(model.eval()), datamodule)
    image, pixel = accuracy["image_auroc"], accuracy["pixel_auroc"]
    print(density_search, densities, fit_seconds, image, pixel, flush=True)
    return [density_search, f"{densities:.1f}", f"{fit_seconds:.1f}", f"{image:.2f}", f"{pixel:.2f}"]


def main() -> None:
    """Command-line entry point."""
    rows = [fit_and_score(mode) for mode in ("exact", "approximate")]
    header = ["density_search", "densities s", "Engine.fit s (no validation)", "image AUROC", "pixel AUROC"]
    text = (
        "# Local densities: exact or approximate neighbour search at fit time\n\n"
        f"Command: `python benchmarks/density_search.py`. Machine: {platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, load average at the end "
        f"{os.getloadavg()[0]:.1f}.\n\n" + " ".join(__doc__.split("\n\n")[1].split()) + "\n\n"
    )
    (RESULTS / "density_search.md").write_text(text + "\n".join(pipe_table(header, rows)) + "\n")


if __name__ == "__main__":
    main()
