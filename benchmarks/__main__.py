"""Reproduce a published table: ``python -m benchmarks TABLE [--smoke] [--data-root DIR] ...``.

Writes ``<results>/<table>.csv`` (one row per dataset, category, method and metric),
``<results>/<table>.md`` (ours | published | difference) and one JSON log per run in
``<results>/runs/``. Re-running continues with the jobs missing from the CSV. See README.md.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from .figures import plot
from .reb_rows import chosen_k_markdown
from .report import markdown
from .runner import build_specs, read_results, run_table
from .tables import BACKBONES, TABLES, Settings

HERE = Path(__file__).resolve().parent
DEFAULT_DATA_ROOT = HERE.parents[1] / "shared" / "data"
SMOKE_WEIGHTS = "mobilenetv2_100.tv_in1k.safetensors"
SMOKE_NOTES = (
    "Smoke run: KolektorSDD stands in for one category, with MobileNetV2 (ImageNet weights), "
    "{size}×{size} input, {n_train} training and {n_test} test images (seeded subsets). The "
    "published column is the paper's {dataset} mean ({backbone} where the table has backbones), "
    "printed only to exercise the comparison: the numbers are not comparable."
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("table", choices=sorted(TABLES))
    parser.add_argument("--smoke", action="store_true", help="KolektorSDD stand-in, tiny settings")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=DEFAULT_DATA_ROOT,
        help="folder holding MVTecAD/, MVTec_LOCO/, BTech/ (smoke: holding kolektorsdd/)",
    )
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default=None)
    parser.add_argument("--weights", type=Path, default=None, help="local timm weights file")
    parser.add_argument("--categories", nargs="+", default=None, help="run only these categories")
    parser.add_argument("--results", type=Path, default=None, help="output folder")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--textures",
        type=Path,
        default=None,
        help="table5: texture images for the DRAEM representation (DTD, e.g. dtd/images)",
    )
    return parser.parse_args(argv)


def settings_for(args: argparse.Namespace) -> Settings:
    """Full-run settings are the papers'; the smoke mode's are sized for CI on 2 cores."""
    table = TABLES[args.table]
    if args.table == "pdae" and (args.backbone or (args.weights and not args.smoke)):
        msg = "pdae runs the backbones of configs/pdae/mvtec.yaml from the hub: no --backbone/--weights"
        raise SystemExit(msg)
    if args.textures is not None and not args.textures.is_dir():
        msg = f"texture folder {args.textures} not found"
        raise SystemExit(msg)
    textures = str(args.textures.resolve()) if args.textures is not None else None
    if args.table == "table5" and not args.smoke and textures is None:
        msg = (
            "table5's DRAEM representation fills its defects with DTD textures, as REB did: pass "
            "--textures DIR (the images/ folder of https://www.robots.ox.ac.uk/~vgg/data/dtd/)"
        )
        raise SystemExit(msg)
    if args.smoke:
        return replace(
            Settings(
                backbone=args.backbone or "mobilenetv2_100",
                image_size=128,
                n_train=16,
                n_test=24,
                patchcore_ratio=0.01,
                smoke=True,
                k_values=(1, 9, 33),
                coreset_ratios=(0.1, 0.01),
                textures=textures,
            ),
            **table.smoke_settings,
        )
    return Settings(backbone=args.backbone or table.backbone, image_size=table.image_size, textures=textures)


def main(argv: list[str] | None = None) -> Path:
    """Run a table; return the path of its markdown report."""
    args = parse_args(argv)
    settings = settings_for(args)
    results_dir = args.results or HERE / "results" / ("smoke" if args.smoke else "")
    weights = args.weights
    if args.smoke and weights is None:
        weights = args.data_root.parent / "weights" / SMOKE_WEIGHTS
    if weights is not None and not weights.is_file():
        msg = f"weights file {weights} not found (pass --weights FILE)"
        raise SystemExit(msg)
    runs_dir = results_dir / "runs"
    specs = build_specs(
        args.table,
        settings,
        args.data_root.resolve(),
        runs_dir,
        categories=args.categories,
        weights=None if weights is None else weights.resolve(),
        accelerator=args.accelerator,
        seed=args.seed,
    )
    table = TABLES[args.table]
    results_csv = results_dir / f"{table.results or args.table}.csv"
    run_table(specs, results_csv, runs_dir)
    notes = ""
    stand_in = None
    if args.smoke:
        stand_in = table.datasets[0]
        notes = SMOKE_NOTES.format(
            size=settings.image_size,
            n_train=settings.n_train,
            n_test=settings.n_test,
            dataset=stand_in,
            backbone=table.backbone,
        )
        notes = " ".join(filter(None, [notes, table.smoke_note]))
    notes = "\n\n".join(filter(None, [notes, table.note]))
    report = results_dir / f"{args.table}.md"
    results = read_results(results_csv)
    if table.published is None:
        figure = plot(
            args.table, results, results_dir / f"{args.table}.png", " (smoke)" if args.smoke else ""
        )
        notes = (
            notes.split(" The published")[0] + "\n\n" if notes else ""
        ) + f"![{args.table}]({figure.name})"
    report.write_text(markdown(args.table, results, stand_in, notes) + chosen_k_markdown(results))
    print(f"wrote {results_csv} and {report}")
    return report


if __name__ == "__main__":
    main()
