"""One benchmark run in its own process: fit a model on one category, test it, write a JSON log.

The runner starts ``python -m benchmarks.job SPEC.json`` once per (category, model) so that every
run has fresh memory, its own allocator settings and its own seed. The spec (built by
:mod:`benchmarks.jobs`) names the datamodule, the model and its init args; the log (written to
``spec["log"]``) holds the spec, the weights used, the metrics, the timings and the rows to add
to the table's CSV.

A spec may list ``variants`` (scorer, K) of Ldknn: the memory bank is fitted once and each variant
re-scores the same test images on that bank (``LdknnModel.rescore``; REB Table 6, Fig. 5). A
``sweep`` lists init-arg overrides (e.g. coreset ratios, REB Fig. 4): one fresh model is fitted
per item, in this process.
``report_speed`` adds test images per second; ``report_costs`` the fit time, peak memory and the
seconds of each fit stage the model timed itself (Ldknn: ``coreset``, ``statistics``, ``search``).
"""

from __future__ import annotations

import json
import math
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from .build import build_model, limited_datamodule, quiet_engine, weights_record


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stage_seconds(model) -> dict[str, float]:
    """``<stage>_seconds`` of every fit stage the torch model timed (its ``timer``), if it has one."""
    timer = getattr(model.model, "timer", None)
    if timer is None:
        return {}
    return {f"{stage}_seconds": seconds for stage, seconds in timer.seconds.items()}


def run(spec: dict) -> dict:
    """Fit and test as the spec says; return the log (also written to ``spec['log']``)."""
    import torch
    from lightning.pytorch import seed_everything

    from .details import DetailCollector
    from .reb_rows import prepare

    seed_everything(spec["seed"], workers=True)
    datamodule = limited_datamodule(
        spec["datamodule"],
        spec.get("n_train"),
        spec.get("n_test"),
        spec["seed"],
        root=spec["root"],
        category=spec["category"],
        train_batch_size=spec["batch_size"],
        eval_batch_size=spec["batch_size"],
        num_workers=spec["num_workers"],
    )
    spec, extra = prepare(spec, datamodule, build_model)
    rows, runs = extra.pop("rows"), []
    collector = DetailCollector(spec.get("anomaly_types"), pro=spec.get("pro", False))
    fit_seconds = []
    for item in spec.get("sweep") or [{}]:
        model = build_model({**spec, "init_args": {**spec["init_args"], **item.get("init_args", {})}})
        variants = spec.get("variants") or [{"method": item.get("method", spec["method"])}]
        with tempfile.TemporaryDirectory() as root:
            engine = quiet_engine(root, spec["accelerator"], [collector], spec.get("max_epochs"))
            started = time.perf_counter()
            engine.fit(model, datamodule=datamodule)
            fit_seconds.append(time.perf_counter() - started)
            stages = _stage_seconds(model)
            for variant in variants:
                if "scorer" in variant:
                    model.model.rescore(scorer=variant["scorer"], k=variant["k"])
                started = time.perf_counter()
                collector.reset()
                engine.test(model, datamodule=datamodule, verbose=False)
                test_seconds = time.perf_counter() - started
                metrics = collector.metrics()
                if spec.get("report_speed"):
                    metrics["images_per_second"] = len(datamodule.test_data) / test_seconds
                if spec.get("report_costs"):
                    metrics |= {"fit_seconds": fit_seconds[-1], "peak_rss_mb": _peak_rss_mb(), **stages}
                parameter = variant.get("parameter", item.get("parameter", ""))
                details = collector.details()
                runs.append({**item, **variant, **metrics, "test_seconds": test_seconds, **details})
                rows += [
                    {"method": variant["method"], "parameter": parameter, "metric": metric, "value": value}
                    for metric, value in metrics.items()
                ]
    # Paths by name only: the logs are committed and must not depend on this machine.
    paths = {
        key: Path(spec[key]).name for key in ("root", "weights", "log", "finetuned_dir") if spec.get(key)
    }
    log = {
        "spec": {**spec, **paths},
        **weights_record(spec),
        "n_train": len(datamodule.train_data),
        "n_test": len(datamodule.test_data),
        "fit_seconds": fit_seconds,
        "runs": runs,
        "rows": rows,
        "finite": all(math.isfinite(row["value"]) for row in rows),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "machine": platform.machine(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    Path(spec["log"]).write_text(json.dumps(log, indent=2) + "\n")
    return log


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()))
