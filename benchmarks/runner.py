"""Run a table's jobs one process each, resumably, appending rows to ``<results>/<table>.csv``.

A job whose rows are already in the CSV is skipped, so an interrupted run continues with the
categories left. A job that fails stops the run with its log's tail (nothing is written for it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from .tables import DATAMODULES, FOLDERS, SMOKE_DATASET, TABLES, Settings, dataset_categories, model_jobs

COLUMNS = (
    "table", "dataset", "backbone", "representation", "method", "parameter", "category", "metric",
    "value", "job",
)  # fmt: skip
# anomalib's Patchcore needs this glibc setting on small machines (its memory bank is
# re-allocated often; without it freed memory is not returned and RSS grows without bound).
PATCHCORE_ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576"}


def read_results(path: Path) -> pd.DataFrame:
    """The results CSV, or an empty frame with its columns."""
    if not path.exists():
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.read_csv(path, dtype={"category": str, "parameter": str, "job": str}, keep_default_na=False)


def _data_root(data_root: Path, dataset: str) -> Path:
    return data_root if dataset == SMOKE_DATASET else data_root / FOLDERS[dataset]


def build_specs(
    table: str,
    settings: Settings,
    data_root: Path,
    runs_dir: Path,
    categories: list[str] | None = None,
    weights: Path | None = None,
    accelerator: str = "auto",
    seed: int = 0,
) -> list[dict]:
    """Every job of a table, as specs for :mod:`benchmarks.job`."""
    specs = []
    # Tables sharing a results CSV (PatchCore S1-S3) share their jobs, hence the CSV's name here.
    prefix = TABLES[table].results or table
    for dataset, category in dataset_categories(table, settings.smoke, categories):
        for model in model_jobs(table, settings):
            job_id = f"{prefix}.{dataset}.{category}.{settings.backbone}.{model['key']}"
            specs.append(
                {
                    **model,
                    "table": prefix,
                    "job": job_id,
                    "dataset": dataset,
                    "datamodule": "MVTecAD" if dataset == SMOKE_DATASET else DATAMODULES[dataset],
                    "root": str(_data_root(data_root, dataset)),
                    "category": category,
                    "backbone": settings.backbone,
                    "image_size": settings.image_size,
                    "n_train": settings.n_train,
                    "n_test": settings.n_test,
                    "batch_size": model.get("batch_size") or (16 if settings.smoke else 32),
                    "num_workers": 0 if settings.smoke else 4,
                    "accelerator": "cpu" if settings.smoke else accelerator,
                    "weights": None if weights is None else str(weights),
                    "seed": seed,
                    "log": str(runs_dir / f"{job_id}.json"),
                }
            )
    return specs


def _run_process(spec: dict, runs_dir: Path) -> dict:
    spec_path = runs_dir / f"{spec['job']}.spec.json"
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    env = dict(os.environ)
    if spec["model"] == "Patchcore":
        env.update(PATCHCORE_ENV)
    output_path = runs_dir / f"{spec['job']}.out"
    with output_path.open("w") as output:
        result = subprocess.run(
            [sys.executable, "-m", "benchmarks.job", str(spec_path)],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        tail = "\n".join(output_path.read_text().splitlines()[-25:])
        msg = f"job {spec['job']} failed (exit {result.returncode}); full output in {output_path}:\n{tail}"
        raise RuntimeError(msg)
    spec_path.unlink()
    output_path.unlink()
    return json.loads(Path(spec["log"]).read_text())


def run_table(specs: list[dict], results_csv: Path, runs_dir: Path) -> pd.DataFrame:
    """Run the specs not yet in ``results_csv``, appending each job's rows as it finishes."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    results = read_results(results_csv)
    done = set(results["job"])
    for index, spec in enumerate(specs, start=1):
        prefix = f"[{index}/{len(specs)}] {spec['job']}"
        if spec["job"] in done:
            print(f"{prefix}: already in {results_csv.name}, skipped", flush=True)
            continue
        print(f"{prefix}: running", flush=True)
        started = time.perf_counter()
        log = _run_process(spec, runs_dir)
        rows = pd.DataFrame(
            [
                {
                    "table": spec["table"],
                    "dataset": spec["dataset"],
                    "backbone": spec["backbone"],
                    "representation": spec["representation"],
                    "category": spec["category"],
                    "job": spec["job"],
                    **row,
                }
                for row in log["rows"]
            ],
            columns=list(COLUMNS),
        )
        results = pd.concat([results, rows], ignore_index=True) if len(results) else rows
        results.to_csv(results_csv, index=False, float_format="%.2f")
        summary = ", ".join(f"{r['method']} {r['metric']} {r['value']:.1f}" for r in log["rows"])
        print(f"{prefix}: done in {time.perf_counter() - started:.0f} s: {summary}", flush=True)
    return results
