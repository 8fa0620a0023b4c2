"""Ldknn fitted on ten times KolektorSDD's training set: peak memory with the rows on disk.

The stand-in training set is KolektorSDD's 250 normal training images plus nine seeded variants of
each (flipped left-right and up-down with probability 1/2 each, cropped to 85-100% of each side at
a random offset): 2 500 images, 2.56 million patch embeddings of 512 float32 values (5.2 GB).
Past 256 MiB, Ldknn's ``EmbeddingStore`` writes every collected row to a temporary file, and the fit
reads them back block by block (``models/ldknn/README.md``). Every row is one fresh process (its peak
RSS is the process's own, ``ru_maxrss``): MobileNetV2 ``blocks.2`` + ``blocks.4`` with real
ImageNet weights, 256×256, 10% coreset, K = 5, image / pixel AUROC of the torch model on the 149
test images (raw scores; masks resized to the map, nearest). The rows on the original 250 images
compare the paths: rows in memory with exact and with approximate local densities, and the rows
forced to disk.

Usage: ``python benchmarks/large_fit.py [--copies 10] [--only NAME ...]``; writes
``benchmarks/results/large_fit.md`` (+ ``.json``, one entry per row, kept across partial runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.markdown import pipe_table
from benchmarks.settings import SHARED, WEIGHTS_FILES

RESULTS = Path(__file__).resolve().parent / "results"
CATEGORY = "kolektorsdd"
# Where the rows go, as an embedding budget: kept in memory whatever their size, or forced to
# disk. Any other name keeps Ldknn's default (on disk past ``EMBEDDING_MEMORY_BYTES``).
ROW_BUDGETS = {"memory": None, "disk": 0}
# name: (copies of each training image, density search, where the rows go)
ROWS = {
    "250 images, in memory, exact densities": (1, "exact", "memory"),
    "250 images, in memory": (1, "approximate", "memory"),
    "250 images, on disk": (1, "approximate", "disk"),
    "2 500 images": (10, "approximate", "default"),
}


def write_copies(source: Path, target: Path, copies: int, seed: int = 0, category: str = CATEGORY) -> int:
    """``target/category``: ``copies`` seeded variants of every training image, the test split copied.

    Copy 0 is the image itself. Returns the number of training images written. (The test folders
    are copied, not linked: anomalib's datasets do not look into linked folders.)
    """
    folder = target / category
    (folder / "train" / "good").mkdir(parents=True)
    for split in ("test", "ground_truth"):
        shutil.copytree(source / category / split, folder / split)
    written = 0
    for number, path in enumerate(sorted((source / category / "train" / "good").iterdir())):
        image = Image.open(path)
        for copy in range(copies):
            variant = image if copy == 0 else _variant(image, np.random.default_rng((seed, number, copy)))
            variant.save(folder / "train" / "good" / f"{path.stem}_{copy}.png")
            written += 1
    return written


def _variant(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    width, height = image.size
    crop_width, crop_height = (int(side * rng.uniform(0.85, 1.0)) for side in (width, height))
    left, top = int(rng.integers(0, width - crop_width + 1)), int(rng.integers(0, height - crop_height + 1))
    return image.crop((left, top, left + crop_width, top + crop_height))


def measure(root: str, density_search: str, rows: str, category: str = CATEGORY) -> dict:
    """One row in this process: fit, score the test split, peak RSS."""
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_pdae import Ldknn
    from benchmarks.metrics import aurocs, torch_run
    from benchmarks.timing import timed

    seed_everything(0)
    datamodule = MVTecAD(root=root, category=category, train_batch_size=8, eval_batch_size=8, num_workers=0)
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
    if rows in ROW_BUDGETS:
        model.embeddings.memory_bytes = ROW_BUDGETS[rows]
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(default_root_dir=tmp, logger=False, enable_progress_bar=False, limit_val_batches=0)
        _, fit_seconds = timed(engine.fit, model, datamodule=datamodule)
    fit_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    accuracy = aurocs(torch_run(model.eval()), datamodule)
    seconds = model.model.timer.seconds
    return {
        "training images": len(datamodule.train_data),
        "rows": len(datamodule.train_data) * 32 * 32,
        "test images": len(datamodule.test_data),
        "defective test images": int(datamodule.test_data.samples.label_index.sum()),
        "fit s": round(fit_seconds, 1),
        "coreset s": round(seconds["coreset"], 1),
        "densities s": round(seconds["statistics"], 1),
        "peak RSS MiB (fit)": round(fit_peak),
        "peak RSS MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "image AUROC": round(accuracy["image_auroc"], 2),
        "pixel AUROC": round(accuracy["pixel_auroc"], 2),
        "load average": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=SHARED / "data")
    parser.add_argument("--copies", type=int, default=10, help="training images per original (2 500 row)")
    parser.add_argument("--only", nargs="+", choices=list(ROWS), help="run only these rows")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child process: JSON arguments
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(**json.loads(args.measure))), flush=True)
        return
    results_json = RESULTS / "large_fit.json"
    results = json.loads(results_json.read_text()) if results_json.exists() else {}
    for name in args.only or list(ROWS):
        copies, density_search, rows = ROWS[name]
        copies = args.copies if copies > 1 else 1
        with tempfile.TemporaryDirectory() as tmp:
            root = args.data_root
            if copies > 1:
                print(f"{name}: writing {copies} variants of each training image", flush=True)
                write_copies(args.data_root, Path(tmp), copies)
                root = Path(tmp)
            call = {"root": str(root), "density_search": density_search, "rows": rows}
            command = [sys.executable, "-m", "benchmarks.large_fit", "--measure", json.dumps(call)]
            output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
        results[name] = {"density search": density_search, **json.loads(output.strip().splitlines()[-1])}
        print(name, results[name], flush=True)
        results_json.write_text(json.dumps(results, indent=2) + "\n")
    write_report(results)


def write_report(results: dict) -> None:
    """``large_fit.md`` from every row measured so far."""
    columns = [
        "training images", "rows", "density search", "fit s", "coreset s", "densities s",
        "peak RSS MiB (fit)", "peak RSS MiB", "image AUROC", "pixel AUROC", "load average",
    ]  # fmt: skip
    rows = [[name, *(str(row.get(column, "")) for column in columns)] for name, row in results.items()]
    text = (
        "# Ldknn on ten times KolektorSDD's training set: the rows on disk\n\n"
        f"Command: `python benchmarks/large_fit.py`. "
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs.\n\n"
        + " ".join(__doc__.split("\n\n")[1].split())
        + " Load average: one minute, when the row ended.\n\n"
    )
    (RESULTS / "large_fit.md").write_text(text + "\n".join(pipe_table(["row", *columns], rows)) + "\n")


if __name__ == "__main__":
    main()
