"""Markdown of ``benchmarks/localisation.py``'s results (``results/localisation*.json``; README.md)."""

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
input. Each row re-scores one fitted bank, changing one factor against the first row of its group;
unless it says otherwise the image score is REB's block-max and the map bilinear + σ = 4 Gaussian.
The baseline, metrics, timing and the runs behind these tables: benchmarks/README.md, "Other
scripts here", `localisation.py`.

Command (repository root): `python benchmarks/localisation.py --data-root ../shared/data
--weights-dir ../shared/weights` (started {started}).
"""


def _group_key(row: dict) -> tuple:
    return row["backbone"], row["aggregation"], str(row["embedding_dim"]), row["ratio"]


def _metrics(row: dict) -> list[str]:
    return ["–" if row.get(c) is None else f"{row[c]:.3f}" for c in COLUMNS]


def write_markdown(results: Path) -> None:
    """Write ``<results>.md`` from ``<results>.json`` and the parts ``<results>_*.json``."""
    saved = [json.loads(part.read_text()) for part in sorted(results.parent.glob(f"{results.name}*.json"))]
    # A bank measured by two runs is shown as its first run measured it.
    unique: dict[tuple, dict] = {}
    for row in (row for part in saved for row in part["rows"]):
        unique.setdefault((*_group_key(row), row["row"]), row)
    rows = list(unique.values())
    started = ", ".join(part["started"] for part in saved if "started" in part)
    backbones = ", ".join(dict.fromkeys(r["backbone"] for r in rows))
    lines = [HEADER.format(backbones=backbones, started=started or "?"), *_summary(rows)]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(_group_key(row), []).append(row)
    for (backbone, aggregation, dim, ratio), members in groups.items():
        what = f"D = {dim}" if aggregation == "reference" else "anomalib aggregation (concatenated channels)"
        lines += [f"## {backbone}, {what}, coreset {100 * ratio:g}% (bank {members[0]['bank']})", ""]
        header = ["factor", "row", "image AUROC", "pixel AUROC", "pixel AUPRO", "ms/image"]
        cells = [[r["factor"], r["row"], *_metrics(r), f"{r['ms_per_image']:.0f}"] for r in members]
        lines += [*pipe_table(header, cells, "--- --- ---: ---: ---: ---:"), ""]
    results.with_suffix(".md").write_text("\n".join(lines))


def _summary(rows: list[dict]) -> list[str]:
    """Default, split option and baseline side by side for each backbone at 1%."""
    cells = []
    for backbone in dict.fromkeys(r["backbone"] for r in rows):
        at_1 = [r for r in rows if r["backbone"] == backbone and r["ratio"] == 0.01]
        at_1 = [r for r in at_1 if r["embedding_dim"] in (512, "concat")]
        for label, names, aggregation in (
            ("anomalib PatchcoreModel", ("anomalib PatchcoreModel",), "anomalib"),
            ("Ldknn, map of the corrected score (REB)", (DEFAULT,), "reference"),
            ('Ldknn, map of the plain distance (`map_score="distance"`)', SPLITS, "reference"),
            ('Ldknn, `aggregation="anomalib"`', (DEFAULT,), "anomalib"),
        ):
            for name in names:
                found = [r for r in at_1 if r["row"].startswith(name) and r["aggregation"] == aggregation]
                if found:
                    cells.append([backbone, label, *_metrics(found[0])])
                    break
    header = ["backbone", "model", "image AUROC", "pixel AUROC", "pixel AUPRO"]
    return ["## Summary at an equal 1% bank", "", *pipe_table(header, cells, "--- --- ---: ---: ---:"), ""]
