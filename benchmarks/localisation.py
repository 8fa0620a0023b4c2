"""Where LDKNN's localisation goes: one factor at a time against one fitted bank (README.md).

Usage: ``python benchmarks/localisation.py [--part NAME] [--render] ...`` (``--help``); writes
``benchmarks/results/localisation[_<part>].json`` and ``localisation.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from benchmarks import localisation_data as data
from benchmarks.localisation_table import write_markdown
from benchmarks.settings import SHARED, WEIGHTS_FILES
from benchmarks.timing import timed

RESULTS = Path(__file__).resolve().parent / "results" / "localisation"
LAYERS = ["blocks.2", "blocks.4"]
K = 5
SIGMA = 4.0
# Scorer variants: (name, scorer, distance, gamma, density form); the first is today's default.
SCORERS = [
    ("ldknn, squared, gamma 1 (default)", "ldknn", "squared", 1.0, "subtract"),
    ("ldknn, squared, gamma 0.5", "ldknn", "squared", 0.5, "subtract"),
    ("ldknn, squared, ratio", "ldknn", "squared", 1.0, "ratio"),
    ("ldknn, euclidean, gamma 1", "ldknn", "euclidean", 1.0, "subtract"),
    ("1-NN, squared", "knn", "squared", 0.0, "subtract"),
    ("1-NN, euclidean", "knn", "euclidean", 0.0, "subtract"),
]
# (image score from, anomaly map from) in SCORERS: the density correction on the image score only.
SPLITS = [(0, 4), (0, 5), (3, 5)]
MAP_PATHS = [
    "bilinear + GaussianBlur2d σ4 (ours)",
    "bilinear + scipy gaussian_filter σ4 (REB, PatchCore ref.)",
    "nearest + GaussianBlur2d σ4 (anomalib AnomalyMapGenerator)",
    "bicubic + GaussianBlur2d σ4",
    "bilinear, no blur",
    "bilinear + GaussianBlur2d σ2",
    "bilinear + GaussianBlur2d σ8",
    "blur on the patch grid (σ0.5), then bilinear",
]


@dataclass
class Bank:
    """A fitted bank and the test patches' nearest memory point in it."""

    size: int
    ld_squared: torch.Tensor
    ld_euclidean: torch.Tensor
    nearest: torch.Tensor  # (B, 1, H, W) squared distance to the nearest memory point
    index: torch.Tensor  # (B, 1, H, W) its row
    fit_seconds: float
    search_ms: float


def extract(backbone: str, weights: Path, images: torch.Tensor) -> list[torch.Tensor]:
    """Backbone feature maps of all images, a few at a time."""
    from anomalib_pdae.models.components import Backbone

    net = Backbone(backbone, LAYERS, weights=weights)
    with torch.no_grad():
        parts = [net(chunk) for chunk in images.split(8)]
    return [torch.cat([p[i] for p in parts]) for i in range(len(LAYERS))]


def embed(features: list[torch.Tensor], dim: int, aggregation: str) -> torch.Tensor:
    """Patch embeddings ``(B, D, H, W)`` exactly as ``LdknnModel.embed`` computes them."""
    from anomalib_pdae.models.components import PatchEmbedding

    embedding = PatchEmbedding(embedding_dim=dim or 1, aggregation=aggregation)  # 0: unused by anomalib
    with torch.no_grad():
        return torch.cat([embedding([f[i : i + 8] for f in features]) for i in range(0, len(features[0]), 8)])


def patches(embedding: torch.Tensor) -> torch.Tensor:
    return embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1]).contiguous()


def fit_bank(train: torch.Tensor, test: torch.Tensor, ratio: float) -> Bank:
    """Coreset, local densities against the full bank (self excluded), test nearest neighbours."""
    from anomalib_pdae.models.components import greedy_coreset
    from anomalib_pdae.models.components.search import faiss_knn, nearest_neighbours

    def fit() -> tuple[torch.Tensor, np.ndarray]:
        full = patches(train)
        memory = full if ratio == 1 else full[torch.from_numpy(greedy_coreset(full, ratio, progress=False))]
        return memory, faiss_knn(memory, full, K, exclude_self=True)[0]

    (memory, squared), fit_seconds = timed(fit)
    found, seconds = timed(
        lambda: [nearest_neighbours(patches(chunk), memory, k=1) for chunk in test.split(4)]
    )
    shape = (test.shape[0], 1, *test.shape[2:])
    return Bank(
        size=len(memory),
        ld_squared=torch.from_numpy(squared.mean(1)),
        ld_euclidean=torch.from_numpy(np.sqrt(squared).mean(1)),
        nearest=torch.cat([f[0] for f in found]).reshape(shape),
        index=torch.cat([f[1] for f in found]).reshape(shape),
        fit_seconds=fit_seconds,
        search_ms=1e3 * seconds / len(test),
    )


def patch_scores(bank: Bank, scorer: str, distance: str, gamma: float, form: str) -> torch.Tensor:
    """The model's patch scores (its ``scorers.density_corrected``) from the stored nearest neighbours."""
    from anomalib_pdae.models.ldknn.scorers import density_corrected

    nearest = bank.nearest if distance == "squared" else bank.nearest.sqrt()
    if scorer == "knn":
        return nearest
    density = (bank.ld_squared if distance == "squared" else bank.ld_euclidean)[bank.index]
    return density_corrected(nearest, density, gamma, form)


def anomaly_map(scores: torch.Tensor, path: str) -> torch.Tensor:
    """Pixel map of patch scores by one of :data:`MAP_PATHS`."""
    from anomalib.models.components import GaussianBlur2d

    size = (data.IMAGE_SIZE, data.IMAGE_SIZE)
    sigma = {"σ2": 2.0, "σ8": 8.0}.get(path.rsplit(maxsplit=1)[-1], SIGMA)
    if path.startswith("blur on the patch grid"):
        grid_sigma = SIGMA * scores.shape[-1] / data.IMAGE_SIZE
        out = F.interpolate(GaussianBlur2d(sigma=grid_sigma, channels=1)(scores), size=size, mode="bilinear")
    else:
        mode = path.split(maxsplit=1)[0].rstrip(",")
        out = F.interpolate(scores, size=size, mode=mode, align_corners=None if mode == "nearest" else False)
        if "scipy" in path:
            out = torch.from_numpy(np.stack([ndimage.gaussian_filter(m, sigma=SIGMA) for m in out.numpy()]))
        elif "no blur" not in path:
            out = GaussianBlur2d(sigma=sigma, channels=1)(out)
    return out


def evaluate(metrics: data.Metrics, bank: Bank, image_from: tuple, map_from: tuple, path: str) -> dict:
    """Metrics of the image score (REB's block-max) of one scorer and the map of another."""
    from anomalib_pdae.models.ldknn.image_score import image_scores

    image = image_scores(patch_scores(bank, *image_from[1:]), "block_max")
    scores = patch_scores(bank, *map_from[1:])
    pixel, seconds = timed(anomaly_map, scores, path)
    return {**metrics(image, pixel), "ms_per_image": bank.search_ms + 1e3 * seconds / len(scores)}


def ablate_bank(test: data.Metrics, bank: Bank, setting: dict, level: str) -> Iterator[dict]:
    """Rows on one bank: ``key`` (default, 1-NN, two splits), ``scorers`` (all), ``full`` (+ map paths)."""
    common = {**setting, "bank": bank.size, "fit_seconds": bank.fit_seconds, "search_ms": bank.search_ms}
    if level == "key":  # the most telling rows first
        plan = [(SCORERS[0], SCORERS[0], 0), (SCORERS[0], SCORERS[4], 0), (SCORERS[0], SCORERS[5], 0)]
        plan += [(SCORERS[5], SCORERS[5], 0), (SCORERS[0], SCORERS[0], 1), (SCORERS[4], SCORERS[4], 0)]
    else:
        plan = [(variant, variant, 0) for variant in SCORERS]
        plan += [(SCORERS[image_from], SCORERS[map_from], 0) for image_from, map_from in SPLITS]
        if level == "full":
            plan += [(v, v, path) for path in range(1, len(MAP_PATHS)) for v in (SCORERS[0], SCORERS[5])]
    for image_from, map_from, path in plan:
        row = evaluate(test, bank, image_from, map_from, MAP_PATHS[path])
        if path:
            factor, name = "map path", f"{image_from[0]}; {MAP_PATHS[path]}"
        elif image_from is map_from:
            factor, name = "scorer", image_from[0]
        else:
            factor, name = "density on the image only", f"image {image_from[0]}; map {map_from[0]}"
        print(f"[{time.strftime('%H:%M:%S')}] {setting} {name}: {row}", flush=True)
        yield {**common, "factor": factor, "row": name, **row}


def run(args: argparse.Namespace) -> list[dict]:
    torch.manual_seed(0)
    train, test_split = data.load_splits(args.data_root)
    test = data.Metrics(test_split)
    results: list[dict] = []
    for backbone in args.backbones:
        weights = Path(args.weights_dir) / WEIGHTS_FILES[backbone]
        if 0.01 in args.ratios and args.baseline:
            results.append(data.patchcore_baseline(backbone, weights, LAYERS, train, test_split, test))
            print(results[-1], flush=True)
        train_features = extract(backbone, weights, train.images)
        test_features = extract(backbone, weights, test_split.images)
        plans = [
            (512 if a == "reference" else 0, a, ratio) for a in args.aggregations for ratio in args.ratios
        ]
        if backbone == args.backbones[0] and args.dims:
            plans += [(dim, "reference", 0.01) for dim in (128, 256, 1024)] + [(0, "anomalib", 0.01)]
        for dim, aggregation, ratio in plans:
            bank = fit_bank(
                embed(train_features, dim, aggregation), embed(test_features, dim, aggregation), ratio
            )
            setting = {"backbone": backbone, "embedding_dim": dim or "concat", "aggregation": aggregation}
            setting["ratio"] = ratio
            level = args.level or ("scorers" if dim == 512 else "key")
            if not args.level and dim == 512 and ratio in args.map_ratios and backbone == args.backbones[0]:
                level = "full"
            for row in ablate_bank(test, bank, setting, level):
                results.append(row)
                _json(args).write_text(json.dumps({"rows": results}, indent=1) + "\n")
    return results


def _json(args: argparse.Namespace) -> Path:
    return RESULTS.with_name(f"localisation_{args.part}.json" if args.part else "localisation.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add("--data-root", default=str(SHARED / "data"))
    add("--weights-dir", default=str(SHARED / "weights"))
    add("--backbones", nargs="+", default=list(WEIGHTS_FILES))
    add("--ratios", nargs="+", type=float, default=[0.01, 0.1])
    add("--map-ratios", nargs="+", type=float, default=[0.01], help="banks with map-path rows")
    add("--no-baseline", dest="baseline", action="store_false", help="skip Patchcore")
    add("--aggregations", nargs="+", default=["reference"], choices=["reference", "anomalib"])
    add("--no-dims", dest="dims", action="store_false", help="skip the embedding-dim banks")
    add("--level", choices=["key", "scorers", "full"], help="rows per bank (default: by bank)")
    add("--part", default="", help="write results/localisation_<part>.json (runs in parallel)")
    add("--render", action="store_true", help="rewrite the markdown from the saved JSON parts")
    args = parser.parse_args()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if not args.render:
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        _json(args).write_text(json.dumps({"started": started, "rows": run(args)}, indent=1) + "\n")
    write_markdown(RESULTS)


if __name__ == "__main__":
    main()
