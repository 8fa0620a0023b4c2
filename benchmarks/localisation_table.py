"""Markdown of ``benchmarks/localisation.py``'s results (``results/localisation.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.markdown import pipe_table

COLUMNS = ("image_auroc", "pixel_auroc", "pixel_aupro")
DEFAULT = "ldknn, squared, gamma 1 (default)"
# the density correction on the image score only (two spellings: parts written by older runs)
SPLITS = (
    "image ldknn, squared, gamma 1 (default); map 1-NN, squared",
    "image ldknn squared, map 1-NN squared",
)

HEADER = """# LDKNN localisation on KolektorSDD: one factor at a time

Features: timm `{backbones}` with real ImageNet weights, layers `blocks.2` + `blocks.4`, 256×256
input (resize only), 250 training images (256 000 patches), 149 test images. For each bank
(greedy coreset at the ratio shown, embedding dim D of the reference aggregation, or anomalib's
aggregation) the coreset, the local densities (K = 5, against the full bank, self excluded) and
every test patch's nearest memory point are computed once; each row re-scores them, changing one
factor against the first row of its group. Unless a row says otherwise the image score is REB's
block-max and the map is bilinear upsampling + a σ = 4 Gaussian (REB's `RescaleSegmentor`).

Baseline: anomalib's `PatchcoreModel` (its features = the `anomalib` aggregation, Euclidean 1-NN,
9-neighbour reweighted image score, `AnomalyMapGenerator`: nearest upsampling + σ = 4 blur) on a
1% bank chosen by the same greedy coreset. (anomalib's own coreset takes over an hour at 1% on
the two shared cores here; `ldknn_vs_patchcore.md` has anomalib's complete Patchcore at 1%:
image AUROC 0.836, pixel AUROC 0.855, matching the baseline row below.)

Metrics: anomalib's `AUPRO` (FPR limit 0.3) on the raw maps; image and pixel AUROC by the exact
rank-sum formula (equal to anomalib's `AUROC`, tested in `tests/test_benchmarks_localisation.py`),
all over the whole test split. ms/image: the 1-NN search of the bank plus the map path, in this
process on two shared cores (loaded machine: compare within a group only).

**Runs behind these tables** (each writes `results/localisation_<part>.json`; `--render` joins
them): the baselines and the 1% reference banks with `--ratios 0.01 --no-dims --level key`
(parts `mobilenet_baseline`, `mobilenet`, `efficientnet`); the anomalib-aggregation banks at 1%
with `--backbones mobilenetv2_100 tf_efficientnet_lite0 --ratios 0.01 --no-baseline --aggregations
anomalib --no-dims --level key --part anomalib`; MobileNetV2's 10% banks and embedding dims with
`--backbones mobilenetv2_100 --ratios 0.1 --aggregations reference anomalib --no-baseline --level
key --part mobilenet_dims`; MobileNetV2's map-path rows with `--backbones mobilenetv2_100
--ratios 0.01 --no-baseline --no-dims --level full --part full`; EfficientNet-Lite0's 10%, map-path
and embedding-dim banks with `--backbones tf_efficientnet_lite0 --ratios 0.01 0.1 --aggregations
reference anomalib --no-baseline --part efficientnet_full`. **Not measured:** the 100% bank (its
local densities compare 256 000 rows with 256 000 in 512 dimensions, ~34 TFLOP, hours on two
cores).

Command (repository root): `python benchmarks/localisation.py --data-root ../shared/data
--weights-dir ../shared/weights` (started {started}).
"""


def _group_key(row: dict) -> tuple:
    return row["backbone"], row["aggregation"], str(row["embedding_dim"]), row["ratio"]


def _first_of_each(rows: list[dict]) -> list[dict]:
    """``rows`` without repeats: a bank measured by two runs is shown as its first run measured it."""
    seen: set[tuple] = set()
    kept = []
    for row in rows:
        key = (*_group_key(row), row["row"])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def _metrics(row: dict) -> list[str]:
    return ["–" if row.get(c) is None else f"{row[c]:.3f}" for c in COLUMNS]


def write_markdown(results: Path) -> None:
    """Write ``<results>.md`` from ``<results>.json`` and the parts ``<results>_*.json``."""
    parts = sorted(results.parent.glob(f"{results.name}*.json"))
    saved = [json.loads(part.read_text()) for part in parts]
    rows = _first_of_each([row for part in saved for row in part["rows"]])
    started = ", ".join(part["started"] for part in saved if "started" in part)
    backbones = ", ".join(dict.fromkeys(r["backbone"] for r in rows))
    lines = [HEADER.format(backbones=backbones, started=started or "?")]
    lines += _summary(rows)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(_group_key(row), []).append(row)
    for (backbone, aggregation, dim, ratio), members in groups.items():
        size = members[0]["bank"]
        what = f"D = {dim}" if aggregation == "reference" else "anomalib aggregation (concatenated channels)"
        lines += [f"## {backbone}, {what}, coreset {100 * ratio:g}% (bank {size})", ""]
        header = ["factor", "row", "image AUROC", "pixel AUROC", "pixel AUPRO", "ms/image"]
        cells = [[r["factor"], r["row"], *_metrics(r), f"{r['ms_per_image']:.0f}"] for r in members]
        lines += [*pipe_table(header, cells, "--- --- ---: ---: ---: ---:"), ""]
    results.with_suffix(".md").write_text("\n".join(lines))


def _summary(rows: list[dict]) -> list[str]:
    """Default, split option and baseline side by side for each backbone at 1%."""
    cells = []
    for backbone in dict.fromkeys(r["backbone"] for r in rows):

        def pick(name: str, aggregation: str = "reference", backbone: str = backbone) -> dict | None:
            found = [
                r
                for r in rows
                if r["backbone"] == backbone
                and r["row"].startswith(name)
                and r["ratio"] == 0.01
                and r["aggregation"] == aggregation
                and r["embedding_dim"] in (512, "concat")
            ]
            return found[0] if found else None

        for label, row in (
            ("anomalib PatchcoreModel", pick("anomalib PatchcoreModel", "anomalib")),
            ("Ldknn, map of the corrected score (REB)", pick(DEFAULT)),
            ('Ldknn, map of the plain distance (`map_score="distance"`)', pick(SPLITS[0]) or pick(SPLITS[1])),
            ('Ldknn, `aggregation="anomalib"`', pick(DEFAULT, "anomalib")),
        ):
            if row is not None:
                cells.append([backbone, label, *_metrics(row)])
    header = ["backbone", "model", "image AUROC", "pixel AUROC", "pixel AUPRO"]
    return ["## Summary at an equal 1% bank", "", *pipe_table(header, cells, "--- --- ---: ---: ---:"), ""]
