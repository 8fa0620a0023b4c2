"""Ray: a smoke table's jobs as tasks on a local 2-CPU Ray instance give the sequential run's rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.jobs import build_specs
from benchmarks.runner import read_results, run_table
from benchmarks.settings import Settings

ray = pytest.importorskip("ray")  # the optional extra: pip install anomalib-pdae[ray]
KEYS = ["job", "method", "metric"]


def _start_local_ray() -> None:
    """A local 2-CPU Ray instance; its raylet must register within Ray's fixed 30 s, so retry."""
    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False)
            return
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise


def test_ray_rows_equal_the_sequential_run(
    kolektorsdd: Path, mobilenet_weights: Path, tmp_path: Path
) -> None:
    settings = Settings(backbone="mobilenetv2_100", image_size=64, n_train=8, n_test=8, smoke=True)
    results = {}
    _start_local_ray()
    try:
        for mode in ("ray", "sequential"):
            runs = tmp_path / mode / "runs"
            specs = build_specs("table3", settings, kolektorsdd.parent, runs, weights=mobilenet_weights)
            assert len(specs) == 2
            if mode == "sequential":
                run_table(specs, tmp_path / mode / "table3.csv", runs)
            else:
                broken = {**specs[0], "job": "broken", "root": str(tmp_path / "nowhere")}
                broken["log"] = str(runs / "broken.json")
                with pytest.raises(RuntimeError, match=r"1 of 3 jobs failed .*: broken"):
                    run_table([*specs, broken], tmp_path / mode / "table3.csv", runs, ray_address="local")
                assert "Traceback" in (runs / "broken.out").read_text()
            frame = read_results(tmp_path / mode / "table3.csv")
            results[mode] = frame.sort_values(KEYS).reset_index(drop=True)
            assert {path.name for path in runs.glob("*.json")} == {f"{spec['job']}.json" for spec in specs}
    finally:
        ray.shutdown()
    sequential, on_ray = results["sequential"], results["ray"]
    assert len(sequential) == 5  # K=45: image, pixel AUROC; variable K: chosen K, image, pixel AUROC
    labels = [column for column in sequential.columns if column != "value"]
    assert on_ray[labels].equals(sequential[labels])
    # One Ray task per CPU runs with one thread, so sums may round differently in the last bits;
    # the CSV keeps two decimals.
    assert on_ray["value"].tolist() == pytest.approx(sequential["value"].tolist(), abs=0.011)
