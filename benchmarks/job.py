"""One job in its own process: ``python -m benchmarks.job SPEC.json`` fits, tests, writes the log.

``variants`` (scorer, K) re-score one fitted bank; ``sweep`` items (init-arg overrides) each fit a model.
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

from .build import build_datamodule, build_model, quiet_engine, weights_record
from .timing import timed


def _stage_seconds(model) -> dict[str, float]:
    """``<stage>_seconds`` of every fit stage the torch model timed (its ``timer``), if it has one."""
    timer = getattr(model.model, "timer", None)
    return {} if timer is None else {f"{stage}_seconds": seconds for stage, seconds in timer.seconds.items()}


def _peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _test(spec: dict, model, engine, datamodule, collector, variant: dict, costs: dict) -> tuple[dict, float]:
    """Test one variant; its metrics (with speed and costs when asked for) and test seconds."""
    if "scorer" in variant:
        model.model.rescore(scorer=variant["scorer"], k=variant["k"])
    collector.reset()
    _, seconds = timed(engine.test, model, datamodule=datamodule, verbose=False)
    metrics = collector.metrics()
    if spec.get("report_speed"):
        metrics["images_per_second"] = len(datamodule.test_data) / seconds
    if spec.get("report_costs"):
        metrics |= {
            "fit_seconds": costs["fit_seconds"],
            "fit_peak_rss_mb": costs["fit_peak_rss_mb"],
            "peak_rss_mb": _peak_rss_mb(),
            **costs["stages"],
        }
    return metrics, seconds


def run(spec: dict) -> dict:
    """Fit and test as the spec says; return the log (also written to ``spec['log']``)."""
    import torch
    from lightning.pytorch import seed_everything

    from .metrics import ScoreCollector
    from .reb_rows import prepare

    seed_everything(spec["seed"], workers=True)
    datamodule = build_datamodule(spec)
    spec, extra = prepare(spec, datamodule, build_model)
    rows, runs, fit_seconds = extra.pop("rows"), [], []
    collector = ScoreCollector(spec.get("anomaly_types"), pro=spec.get("pro", False))
    for item in spec.get("sweep") or [{}]:
        model = build_model({**spec, "init_args": {**spec["init_args"], **item.get("init_args", {})}})
        with tempfile.TemporaryDirectory() as root:
            engine = quiet_engine(root, spec["accelerator"], [collector], spec.get("max_epochs"))
            fit_seconds.append(timed(engine.fit, model, datamodule=datamodule)[1])
            costs = {
                "fit_seconds": fit_seconds[-1],
                "fit_peak_rss_mb": _peak_rss_mb(),
                "stages": _stage_seconds(model),
            }
            for variant in spec.get("variants") or [{"method": item.get("method", spec["method"])}]:
                metrics, seconds = _test(spec, model, engine, datamodule, collector, variant, costs)
                parameter = variant.get("parameter", item.get("parameter", ""))
                runs.append({**item, **variant, **metrics, "test_seconds": seconds, **collector.details()})
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
