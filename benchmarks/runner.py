"""The one runner: a process per job, in turn or as Ray tasks; resumable CSV; failures reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
COLUMNS = (
    "table", "dataset", "backbone", "representation", "method", "parameter", "category", "metric",
    "value", "weights", "weights_sha256", "job",
)  # fmt: skip
# anomalib's Patchcore re-allocates large tensors often, and its greedy coreset allocates two
# vectors of 4 bytes per training patch every iteration (1 024 000 bytes on KolektorSDD). glibc
# serves allocations below this threshold from its heap, which fragments: at 1048576 the heap of
# a 10% coreset on KolektorSDD grew by about 1 MB per iteration after the first few thousand,
# to 24 GB. Half a MiB maps those vectors apart and returns them when freed.
PATCHCORE_ENV = {"MALLOC_MMAP_THRESHOLD_": "524288"}
TAIL_LINES = 25


def read_results(path: Path) -> pd.DataFrame:
    """The results CSV (columns added since it was written are empty), or an empty frame."""
    if not path.exists():
        return pd.DataFrame(columns=list(COLUMNS))
    text = {"category": str, "parameter": str, "job": str, "weights": str, "weights_sha256": str}
    frame = pd.read_csv(path, dtype=text, keep_default_na=False)
    return frame.reindex(columns=list(COLUMNS), fill_value="")


def execute(spec: dict, *after: object) -> dict:
    """Run one job in a fresh process; return ``{"log": ...}`` or ``{"error": ..., "output": ...}``.

    ``after``: jobs this one waits for (Ray resolves them first). The log is returned, not kept,
    so this runs unchanged on a Ray worker of another machine.
    """
    env = {**os.environ, **(PATCHCORE_ENV if spec["model"] == "Patchcore" else {})}
    with tempfile.TemporaryDirectory() as folder:
        local = {**spec, "log": str(Path(folder) / "log.json")}
        spec_path = Path(folder) / "spec.json"
        spec_path.write_text(json.dumps(local, indent=2) + "\n")
        command = [sys.executable, "-m", "benchmarks.job", str(spec_path)]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            return {"error": f"exit {result.returncode}", "output": result.stdout + result.stderr}
        log = json.loads(Path(local["log"]).read_text())
    log["spec"]["log"] = Path(spec["log"]).name
    return {"log": log}


def _sequential(specs: list[dict]) -> Iterator[tuple[dict, dict]]:
    for spec in specs:
        print(f"{spec['job']}: running", flush=True)
        yield spec, execute(spec)


def _on_ray(specs: list[dict], address: str) -> Iterator[tuple[dict, dict]]:
    """Each job as a Ray task (one GPU, else one CPU); a job reusing fine-tuned weights waits for theirs."""
    try:
        import ray
    except ImportError as error:
        msg = "--ray needs Ray, an optional extra: pip install anomalib-pdae[ray]"
        raise SystemExit(msg) from error
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, include_dashboard=False)
    gpus = ray.cluster_resources().get("GPU", 0) > 0
    task = ray.remote(execute).options(**({"num_gpus": 1, "num_cpus": 0} if gpus else {"num_cpus": 1}))
    first: dict[tuple, object] = {}  # per fine-tuned weights file: the job that writes it
    pending: dict[object, dict] = {}
    for original in specs:
        spec = {**original, "accelerator": original["accelerator"] if gpus else "cpu"}
        tune = json.dumps(spec.get("finetune"), sort_keys=True)
        key = (spec["dataset"], spec["category"], spec["backbone"], tune) if spec.get("finetune") else None
        reference = task.remote(spec, *([first[key]] if key in first else []))
        if key is not None:
            first.setdefault(key, reference)
        pending[reference] = spec
        print(f"{spec['job']}: submitted", flush=True)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        spec = pending.pop(done[0])
        try:
            outcome = ray.get(done[0])
        except ray.exceptions.RayError as error:  # the task itself died (worker lost, out of memory)
            outcome = {"error": type(error).__name__, "output": str(error)}
        yield spec, outcome


def _rows(spec: dict, log: dict) -> pd.DataFrame:
    labels = {key: spec[key] for key in ("table", "dataset", "backbone", "representation", "category", "job")}
    weights = {key: log.get(key, "") for key in ("weights", "weights_sha256")}
    return pd.DataFrame([{**labels, **weights, **row} for row in log["rows"]], columns=list(COLUMNS))


def run_table(
    specs: list[dict], results_csv: Path, runs_dir: Path, ray_address: str | None = None
) -> pd.DataFrame:
    """Run the specs not yet in ``results_csv``, appending each job's rows as it ends.

    ``ray_address``: None runs the jobs here in turn; ``"local"`` starts Ray here; else a cluster's.
    """
    runs_dir.mkdir(parents=True, exist_ok=True)
    results = read_results(results_csv)
    done = set(results["job"])
    for spec in specs:
        if spec["job"] in done:
            print(f"{spec['job']}: already in {results_csv.name}, skipped", flush=True)
    todo = [spec for spec in specs if spec["job"] not in done]
    outcomes = _sequential(todo) if ray_address is None else _on_ray(todo, ray_address)
    failed = []
    for index, (spec, outcome) in enumerate(outcomes, start=1):
        prefix = f"[{index}/{len(todo)}] {spec['job']}"
        if "error" in outcome:
            output = runs_dir / f"{spec['job']}.out"
            output.write_text(outcome["output"])
            tail = "\n".join(outcome["output"].splitlines()[-TAIL_LINES:])
            print(f"{prefix}: FAILED ({outcome['error']}); full output in {output}:\n{tail}", flush=True)
            failed.append(spec["job"])
            continue
        log = outcome["log"]
        Path(spec["log"]).write_text(json.dumps(log, indent=2) + "\n")
        rows = _rows(spec, log)
        results = pd.concat([results, rows], ignore_index=True) if len(results) else rows
        results.to_csv(results_csv, index=False, float_format="%.2f")
        seconds = sum(log["fit_seconds"]) + sum(run["test_seconds"] for run in log["runs"])
        summary = ", ".join(f"{r['method']} {r['metric']} {r['value']:.1f}" for r in log["rows"])
        print(f"{prefix}: done ({seconds:.0f} s fit + test): {summary}", flush=True)
    if failed:
        msg = f"{len(failed)} of {len(todo)} jobs failed (outputs in {runs_dir}): {', '.join(failed)}"
        raise RuntimeError(msg)
    return results
