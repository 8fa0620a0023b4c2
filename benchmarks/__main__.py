"""Reproduce a published table: writes ``<table>.csv``, ``<table>.md`` and ``runs/`` (see README.md)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from .jobs import build_specs
from .plan import missing, plan
from .report import write_report
from .runner import read_results, run_table
from .settings import BACKBONES, SHARED, WEIGHTS_FILES, Settings
from .tables import TABLES

HERE = Path(__file__).resolve().parent
SMOKE = {
    "backbone": "mobilenetv2_100", "image_size": 128, "n_train": 16, "n_test": 24, "patchcore_ratio": 0.01,
    "smoke": True, "k_values": (1, 9, 33), "coreset_ratios": (0.1, 0.01),
}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    add = parser.add_argument
    add("table", choices=sorted(TABLES))
    add("--smoke", action="store_true", help="KolektorSDD stand-in, tiny settings")
    add("--plan", action="store_true", help="list the jobs and estimated durations; run nothing")
    add("--ray", nargs="?", const="local", metavar="ADDRESS", help="as Ray tasks, here or at ADDRESS")
    add("--data-root", type=Path, default=SHARED / "data", help="holds MVTecAD/ ... (smoke: kolektorsdd/)")
    add("--backbone", choices=sorted(BACKBONES))
    add("--weights", type=Path, help="local timm weights file")
    add("--categories", nargs="+", help="run only these categories")
    add("--results", type=Path, help="output folder")
    add("--accelerator", default="auto")
    add("--seed", type=int, default=0)
    add("--textures", type=Path, help="table5: texture images of the DRAEM representation (DTD)")
    return parser.parse_args(argv)


def settings_for(args: argparse.Namespace) -> Settings:
    """Full-run settings are the papers'; the smoke mode's are sized for CI on 2 cores."""
    table = TABLES[args.table]
    if args.table == "pdae" and (args.backbone or (args.weights and not args.smoke)):
        msg = "pdae runs the backbones of configs/pdae/mvtec.yaml from the hub: no --backbone/--weights"
        raise SystemExit(msg)
    if args.textures is not None and not args.textures.is_dir():
        raise SystemExit(f"texture folder {args.textures} not found")
    textures = str(args.textures.resolve()) if args.textures is not None else None
    if args.table == "table5" and not args.smoke and textures is None:
        msg = (
            "table5's DRAEM representation fills its defects with DTD textures, as REB did: pass "
            "--textures DIR (the images/ folder of https://www.robots.ox.ac.uk/~vgg/data/dtd/)"
        )
        raise SystemExit(msg)
    if args.smoke:
        smoke = {**SMOKE, "backbone": args.backbone or SMOKE["backbone"]}
        return replace(Settings(**smoke, textures=textures), **table.smoke_settings)
    settings = Settings(
        backbone=args.backbone or table.backbone, image_size=table.image_size, textures=textures
    )
    return replace(settings, **table.settings)


def main(argv: list[str] | None = None) -> Path | None:
    """Run a table (or print its plan); return the path of its markdown report."""
    args = parse_args(argv)
    settings = settings_for(args)
    results_dir = args.results or HERE / "results" / ("smoke" if args.smoke else "")
    smoke_weights = args.data_root.parent / "weights" / WEIGHTS_FILES[SMOKE["backbone"]]
    weights = args.weights or (smoke_weights if args.smoke else None)
    runs_dir = results_dir / "runs"
    options = {"categories": args.categories, "accelerator": args.accelerator, "seed": args.seed}
    options["weights"] = weights and weights.resolve()
    specs = build_specs(args.table, settings, args.data_root.resolve(), runs_dir, **options)
    if args.plan:
        print(plan(specs))
        return None
    if problems := missing(specs):
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise SystemExit(f"not starting {args.table}: missing\n{listed}\nnothing was run or written.")
    results_csv = results_dir / f"{TABLES[args.table].results or args.table}.csv"
    run_table(specs, results_csv, runs_dir, ray_address=args.ray)
    report = write_report(args.table, read_results(results_csv), results_dir, settings)
    print(f"wrote {results_csv} and {report}")
    return report


if __name__ == "__main__":
    main()
