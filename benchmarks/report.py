"""The one report writer: a results CSV as markdown (ours, published, difference), figures, chosen K."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmarks.published import load_published

from .figures import plot
from .markdown import pipe_table
from .settings import CATEGORIES, SMOKE_DATASET, Settings, fixed_k
from .tables import TABLES

GROUP = ["dataset", "backbone", "representation", "method", "parameter", "metric"]
SMOKE_NOTES = (
    "Smoke run: KolektorSDD stands in for one category, with MobileNetV2 (ImageNet weights), "
    "{size}×{size} input, {n_train} training and {n_test} test images (seeded subsets). The "
    "published column is the paper's {dataset} mean ({backbone} where the table has backbones), "
    "printed only to exercise the comparison: the numbers are not comparable."
)
# MVTec LOCO (REB Table 3): per-type AUROCs average to the published mean_structural /
# mean_logical image AUROC, and the published total is the mean of those two.
TYPE_MEANS = {"structural_image_auroc": "mean_structural", "logical_image_auroc": "mean_logical"}


def _mean_rows(results: pd.DataFrame) -> pd.DataFrame:
    """One ``mean`` row per group over the categories present (``categories``: how many); LOCO's types."""
    means = []
    for key, group in results.groupby(GROUP, sort=False):
        total = len(CATEGORIES.get(key[0], ()))
        row = {**dict(zip(GROUP, key, strict=True)), "category": "mean", "value": group["value"].mean()}
        means.append({**row, "categories": f"{len(group)}/{total}" if total else str(len(group))})
    means = pd.DataFrame(means)
    typed = means["metric"].isin(list(TYPE_MEANS)) if len(means) else pd.Series(dtype=bool)
    if not typed.any():
        return means
    # The per-type means become the published rows; the image AUROC mean becomes their mean.
    means.loc[typed, "category"] = means.loc[typed, "metric"].map(TYPE_MEANS)
    means.loc[typed, "metric"] = "image_auroc"
    keys = GROUP[:-1]
    for key, group in means[typed].groupby(keys, sort=False):
        if len(group) != len(TYPE_MEANS):
            continue
        total = (means[keys] == pd.Series(dict(zip(keys, key, strict=True)))).all(axis=1)
        total &= (means["metric"] == "image_auroc") & (means["category"] == "mean")
        means.loc[total, "value"] = group["value"].mean()
    return means


def compare(table: str, results: pd.DataFrame, stand_in: str | None = None) -> pd.DataFrame:
    """Our rows (per category, then means) joined to the published table on the table's keys.

    ``stand_in``: the published dataset whose mean a smoke run's stand-in is compared with.
    """
    spec = TABLES[table]
    ours = results.drop(columns=["job", "table", "weights", "weights_sha256"], errors="ignore").copy()
    if spec.metrics is not None:
        ours = ours[ours["metric"].isin(spec.metrics)].reset_index(drop=True)
    ours["categories"] = ""
    if stand_in is None:
        ours = pd.concat([ours, _mean_rows(ours)], ignore_index=True)
    if spec.published is None:
        ours["published"] = ours["difference"] = float("nan")
        return ours.rename(columns={"value": "ours"})
    published = load_published(spec.published).rename(columns={"value": "published"})
    lookup = ours.copy()
    if stand_in is not None:
        smoke = lookup["dataset"] == SMOKE_DATASET
        lookup.loc[smoke, ["dataset", "category", "backbone"]] = [stand_in, "mean", spec.backbone]
    keys = list(spec.join)
    merged = lookup[keys].merge(published[[*keys, "published"]], on=keys, how="left")
    ours["published"] = merged["published"].to_numpy()
    ours["difference"] = ours["value"] - ours["published"]
    return ours.rename(columns={"value": "ours"})


def _number(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def markdown(table: str, results: pd.DataFrame, stand_in: str | None = None, notes: str = "") -> str:
    """The comparison as a markdown document."""
    rows = compare(table, results, stand_in)
    lines = [f"# {TABLES[table].description}", "", *([notes, ""] if notes else [])]
    labels = ["dataset", "backbone", "representation", "method", "parameter", "category", "metric"]
    numbers = ["ours", "published", "difference"]
    cells = [
        [*(row[c] for c in labels), *(_number(row[c]) for c in numbers), row["categories"]]
        for row in rows.to_dict("records")
    ]
    return "\n".join(lines + pipe_table([*labels, *numbers, "categories"], cells)) + "\n"


def chosen_k_markdown(results) -> str:
    """A markdown section listing, per category, the fixed K and each variable-K row's chosen K."""
    chosen = results[results["metric"] == "k"]
    if chosen.empty:
        return ""
    lines = [
        "## Variable K, chosen without test labels",
        "",
        "K per category from REB's candidates by image AUROC on held-out normal training images "
        "and DefectMaker pseudo-anomalies made from them (benchmarks/variable_k.py); fixed K is "
        "the table's. Validation AUROCs per K are in the job logs (`runs/*.json`, `variable_k`).",
        "",
    ]
    header = ["dataset", "backbone", "category", "method", "fixed K", "chosen K"]
    cells = [
        [r.dataset, r.backbone, r.category, r.method, fixed_k(r.dataset, r.backbone), int(r.value)]
        for r in chosen.itertuples(index=False)
    ]
    return "\n".join(lines + pipe_table(header, cells)) + "\n"


def write_report(table: str, results: pd.DataFrame, results_dir: Path, settings: Settings) -> Path:
    """Write ``<results_dir>/<table>.md`` (and the figure of fig4 / fig5); return its path."""
    spec = TABLES[table]
    stand_in = spec.datasets[0] if settings.smoke else None
    notes = [f'Notes on this table: benchmarks/README.md, "Notes per table", `{table}`.']
    if settings.smoke and spec.published is not None:
        sizes = {"size": settings.image_size, "n_train": settings.n_train, "n_test": settings.n_test}
        notes.insert(0, SMOKE_NOTES.format(**sizes, backbone=spec.backbone, dataset=stand_in))
    if table in ("fig4", "fig5"):
        figure = plot(table, results, results_dir / f"{table}.png", " (smoke)" if settings.smoke else "")
        notes.append(f"![{table}]({figure.name})")
    report = results_dir / f"{table}.md"
    report.write_text(markdown(table, results, stand_in, "\n\n".join(notes)) + chosen_k_markdown(results))
    return report
