"""LDKNN's approximate neighbour search against the exact one, on one fitted bank per backbone (README.md).

Writes ``benchmarks/results/approximate_search.md`` and ``.json`` (backbones not run again are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path

import faiss
import torch
from torchvision.transforms.v2.functional import resize

from anomalib_pdae.models.components import NeighbourSearch, nearest_neighbours
from anomalib_pdae.models.ldknn import LdknnModel, LdknnSettings
from anomalib_pdae.models.ldknn.settings import DEFAULTS
from benchmarks.markdown import pipe_table
from benchmarks.metrics import auroc
from benchmarks.settings import SHARED, WEIGHTS_FILES
from benchmarks.timing import timed

RESULTS = Path(__file__).resolve().parent / "results" / "approximate_search"
LAYERS = ("blocks.2", "blocks.4")
SIZE = 256
SETTINGS = {"k": 5, "ld_coefficient": 1.0, "embedding_dim": 512, "coreset_ratio": 0.1}
# LDKNN searches one neighbour, so a re-rank of 2 or 4 candidates is valid too.
GRID = {"projection_dim": (32, 64, 128), "candidates": (2, 4, 8, 16, 32, 64)}
# Inverted files (faiss IVF-Flat over the bank: k-means cells, exact distances inside them).
PARTITIONS = {"cells": (256, 1024), "probes": (4, 16, 64)}
SAMPLE_PATCHES = 8192
TIMED_IMAGES = 12
BATCH = 8


def images(data_root: str, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images resized to 256×256, image labels and 256×256 masks of one split."""
    from anomalib.data import MVTecAD

    datamodule = MVTecAD(root=data_root, category="kolektorsdd", eval_batch_size=BATCH, num_workers=0)
    datamodule.setup()
    dataset = datamodule.train_data if split == "train" else datamodule.test_data
    images, labels, masks = [], [], []
    for item in dataset:
        images.append(resize(item.image, [SIZE, SIZE], antialias=True))
        labels.append(int(item.gt_label))
        mask = item.gt_mask if item.gt_mask is not None else torch.zeros(item.image.shape[-2:])
        masks.append(resize(mask[None].float(), [SIZE, SIZE], interpolation=0)[0])
    return torch.stack(images), torch.tensor(labels), torch.stack(masks)


def _grid(model: LdknnModel, patches: torch.Tensor) -> list[dict]:
    """Recall of the exact 1-NN and search time per setting, on training patches."""
    bank = model.memory_bank
    exact_seconds = timed(nearest_neighbours, patches, bank, k=1)[1]
    exact_index = nearest_neighbours(patches, bank, k=1)[1][:, 0]
    rows = []
    for projection_dim in GRID["projection_dim"]:
        for candidates in GRID["candidates"]:
            search = NeighbourSearch("approximate", candidates, projection_dim)
            search.fit(bank)
            seconds = timed(search, patches, bank, k=1)[1]
            index = search(patches, bank, k=1)[1][:, 0]
            rows.append(
                {
                    "projection_dim": projection_dim,
                    "candidates": candidates,
                    "recall": (index == exact_index).float().mean().item(),
                    "speed_up": exact_seconds / seconds,
                }
            )
    return rows


def _partitions(bank: torch.Tensor, patches: torch.Tensor) -> list[dict]:
    """Recall of the exact 1-NN, share of the bank scanned and speed-up of faiss inverted files.

    The share scanned is what an exported graph would have to gather per query for that recall.
    """
    bank, patches = bank.numpy(), patches.numpy()
    exact_index = faiss.knn(patches, bank, 1)[1][:, 0]
    exact_seconds = timed(faiss.knn, patches, bank, 1)[1]
    rows = []
    for cells in PARTITIONS["cells"]:
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(bank.shape[1]), bank.shape[1], cells)
        index.train(bank)
        index.add(bank)
        for probes in PARTITIONS["probes"]:
            index.nprobe = probes
            faiss.cvar.indexIVF_stats.reset()
            (_, found), seconds = timed(index.search, patches, 1)
            scanned = faiss.cvar.indexIVF_stats.ndis / len(patches) / len(bank)
            recall = float((found[:, 0] == exact_index).mean())
            rows.append(
                {
                    "cells": cells,
                    "probes": probes,
                    "recall": recall,
                    "scanned": scanned,
                    "speed_up": exact_seconds / seconds,
                }
            )
    return rows


def score(model: LdknnModel, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image scores and anomaly maps of patch embeddings ``(B, D, H, W)``, a few images at a time."""
    outputs = [
        model.image_outputs(*model.patch_scores(part), (SIZE, SIZE)) for part in embeddings.split(BATCH)
    ]
    return torch.cat([o.pred_score for o in outputs]), torch.cat([o.anomaly_map for o in outputs])


def median_ms(function: Callable[[torch.Tensor], object], items: torch.Tensor) -> float:
    """Median milliseconds of ``function`` on each item alone (a batch of 1), after one warm-up."""
    function(items[:1])
    return 1000 * statistics.median(timed(function, item[None])[1] for item in items)


def _evaluate(model: LdknnModel, test: tuple, embeddings: torch.Tensor) -> dict:
    test_images, labels, masks = test
    scores, maps = score(model, embeddings)
    timed_embeddings = embeddings[:TIMED_IMAGES]
    return {
        "image_auroc": auroc(scores, labels),
        "pixel_auroc": auroc(maps, masks > 0.5),
        "scoring_ms": median_ms(lambda e: score(model, e), timed_embeddings),
        "forward_ms": median_ms(model, test_images[:TIMED_IMAGES]),
    }


def fitted(
    backbone: str, data_root: str, weights_dir: str, coreset_ratio: float = SETTINGS["coreset_ratio"]
) -> tuple[LdknnModel, torch.Tensor, float]:
    """Ldknn fitted on KolektorSDD's training images (seed 0), in eval mode.

    Returns the model, a seeded sample of :data:`SAMPLE_PATCHES` training patch embeddings and
    the fit's seconds.
    """
    torch.manual_seed(0)
    settings = LdknnSettings(backbone=backbone, layers=LAYERS, **SETTINGS | {"coreset_ratio": coreset_ratio})
    model = LdknnModel(settings, weights=Path(weights_dir) / WEIGHTS_FILES[backbone])
    train = images(data_root, "train")[0]
    model.train()
    with torch.no_grad():
        embeddings = torch.cat([model(part) for part in train.split(BATCH)])
    fit_seconds = timed(model.fit, embeddings, progress=False)[1]
    model.eval()
    return model, embeddings[torch.randperm(len(embeddings))[:SAMPLE_PATCHES]], fit_seconds


def _run_backbone(backbone: str, args: argparse.Namespace) -> dict:
    model, sample, fit_seconds = fitted(backbone, args.data_root, args.weights_dir, args.coreset_ratio)
    with torch.no_grad():
        grid = _grid(model, sample)
        partitions = _partitions(model.memory_bank, sample)
        good = [row for row in grid if row["recall"] >= args.min_recall] or grid
        chosen = max(good, key=lambda row: row["speed_up"])
        test = images(args.data_root, "test")
        test_embeddings = torch.cat([model.embed(part) for part in test[0].split(BATCH)])
        default = {"projection_dim": DEFAULTS.projection_dim, "candidates": DEFAULTS.candidates}
        chosen = {name: chosen[name] for name in default}
        searches = {"exact": {"search": "exact"}}
        name = f"approximate d={chosen['projection_dim']} c={chosen['candidates']} (chosen)"
        searches[name] = {"search": "approximate", **chosen}
        if default != chosen:
            name = f"approximate d={default['projection_dim']} c={default['candidates']} (default)"
            searches[name] = {"search": "approximate", **default}
        rows = {}
        for name, search in searches.items():
            model.rescore(**search)
            rows[name] = _evaluate(model, test, test_embeddings) | {"uptime": _uptime()}
            print(backbone, name, rows[name], flush=True)
    return {
        "coreset_ratio": args.coreset_ratio,
        "bank": list(model.memory_bank.shape),
        "fit_seconds": fit_seconds,
        "grid": grid,
        "partitions": partitions,
        "rows": rows,
    }


def _uptime() -> str:
    return os.popen("uptime").read().strip()


def _write(results: dict, args: argparse.Namespace) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    stored = RESULTS.with_suffix(".json")
    results = (json.loads(stored.read_text()) if stored.exists() else {}) | results
    stored.write_text(json.dumps(results, indent=2))
    lines = [
        "# Approximate against exact neighbour search (LDKNN, KolektorSDD)",
        "",
        f"Command: `python benchmarks/approximate_search.py --min-recall {args.min_recall} "
        "--backbones NAME ... [--coreset-ratio R]` (data and weights from the shared folder; each "
        "backbone and bank size may run in its own process).",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, shared with other jobs: each "
        "row gives the load averages (`uptime`) right after its measurement.",
        "",
        "Setting: layers blocks.2 + blocks.4, 256×256, D = 512, K = 5, gamma = 1, the coreset of each "
        "section. "
        "Times are medians over "
        f"{TIMED_IMAGES} test images at batch 1 after one warm-up; scoring = patch scores + image "
        "score + anomaly map from given embeddings; forward = the whole model. Speed-up = exact / "
        "approximate in the same process.",
    ]
    for key, result in results.items():
        exact = result["rows"]["exact"]
        lines += [
            "",
            f"## {key.split(',')[0]}, {100 * result.get('coreset_ratio', 0.1):g}% coreset (bank "
            f"{result['bank'][0]} × {result['bank'][1]}, fit {result['fit_seconds']:.0f} s)",
            "",
            "| search | image AUROC | pixel AUROC | scoring ms | scoring speed-up | forward ms "
            "| forward speed-up | load (uptime) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, row in result["rows"].items():
            lines.append(
                f"| {name} | {row['image_auroc']:.2f} | {row['pixel_auroc']:.2f} | {row['scoring_ms']:.1f} "
                f"| {exact['scoring_ms'] / row['scoring_ms']:.2f}× | {row['forward_ms']:.1f} "
                f"| {exact['forward_ms'] / row['forward_ms']:.2f}× | {row['uptime'].split('load')[-1]} |"
            )
        lines += [
            "",
            f"Parameter grid on {SAMPLE_PATCHES} training patches (recall of the exact 1-NN; search "
            "speed-up over exact on the same patches):",
            "",
        ]
        cells = [
            [r["projection_dim"], r["candidates"], f"{r['recall']:.4f}", f"{r['speed_up']:.2f}×"]
            for r in result["grid"]
        ]
        lines += pipe_table(["projection_dim", "candidates", "recall", "search speed-up"], cells)
        if "partitions" in result:
            lines += [
                "",
                "Inverted files on the same patches (faiss IVF-Flat: k-means cells of the bank, exact "
                "distances inside the probed cells; speed-up over faiss's exact search):",
                "",
            ]
            cells = [
                [
                    r["cells"],
                    r["probes"],
                    f"{r['recall']:.4f}",
                    f"{100 * r['scanned']:.1f}%",
                    f"{r['speed_up']:.2f}×",
                ]
                for r in result["partitions"]
            ]
            lines += pipe_table(["cells", "probes", "recall", "bank scanned", "search speed-up"], cells)
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(SHARED / "data"))
    parser.add_argument("--weights-dir", default=str(SHARED / "weights"))
    parser.add_argument("--backbones", nargs="+", default=list(WEIGHTS_FILES))
    parser.add_argument("--min-recall", type=float, default=0.95)
    parser.add_argument("--coreset-ratio", type=float, default=SETTINGS["coreset_ratio"])
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
    args = parser.parse_args()
    results = {}
    if args.render:
        _write(results, args)
        return
    for backbone in args.backbones:
        default_bank = args.coreset_ratio == SETTINGS["coreset_ratio"]
        key = backbone if default_bank else f"{backbone}, {args.coreset_ratio:g}"
        results[key] = _run_backbone(backbone, args)
        _write(results, args)


if __name__ == "__main__":
    main()
