"""The benchmark runner: exact AUROC, the join to the published tables, and every smoke mode."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks.metrics import auroc
from benchmarks.report import compare, markdown
from benchmarks.settings import SCORERS

REPO = Path(__file__).resolve().parents[1]


def _pairwise_auroc(scores: list[float], labels: list[int]) -> float:
    """Probability that a positive outscores a negative (ties count one half), over all pairs."""
    positives = [s for s, label in zip(scores, labels, strict=True) if label]
    negatives = [s for s, label in zip(scores, labels, strict=True) if not label]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return 100 * wins / (len(positives) * len(negatives))


def test_auroc_matches_pairwise_reference_with_ties() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 12, (300,), generator=generator).double() * 3.5 + 1000
    labels = torch.randint(0, 2, (300,), generator=generator)
    expected = _pairwise_auroc(scores.tolist(), labels.tolist())
    assert auroc(scores, labels) == pytest.approx(expected, abs=1e-9)
    # Large raw scores are not squashed (a sigmoid would tie them all at 1.0).
    assert auroc(torch.tensor([500.0, 501.0, 502.0]), torch.tensor([0, 1, 1])) == 100.0


def test_auroc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        auroc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))


def test_compare_joins_published_rows_and_means() -> None:
    results = pd.DataFrame(
        {
            "table": "table2",
            "dataset": "mvtec_ad",
            "backbone": "resnet18",
            "representation": "",
            "method": "LDKNN (K=5)",
            "parameter": "",
            "category": ["carpet", "grid"],
            "metric": "image_auroc",
            "value": [99.0, 98.0],
            "job": ["a", "b"],
        }
    )
    rows = compare("table2", results).set_index("category")
    # REB Table 2 prints 99.5 (carpet) and 99.2 (grid) for LDKNN (K=5) on ResNet-18, 99.1 mean.
    assert rows.loc["carpet", "published"] == 99.5
    assert rows.loc["carpet", "difference"] == pytest.approx(-0.5)
    assert rows.loc["grid", "published"] == 99.2
    assert rows.loc["mean", "ours"] == pytest.approx(98.5)
    assert rows.loc["mean", "published"] == 99.1
    assert rows.loc["mean", "categories"] == "2/15"
    assert "| mvtec_ad | resnet18 |  | LDKNN (K=5) |  | mean | image_auroc | 98.5 | 99.1 | -0.6 | 2/15 |" in (
        markdown("table2", results)
    )


def _run_smoke(table: str, data_root: Path, weights: Path, results: Path) -> str:
    command = [
        sys.executable, "-m", "benchmarks", table, "--smoke",
        "--data-root", str(data_root), "--weights", str(weights), "--results", str(results),
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


# The other tables' smoke modes are run by tests/test_benchmarks_tables.py.
@pytest.mark.parametrize("table", ["fig4", "fig5", "table2", "table6"])
def test_smoke_mode_runs_end_to_end(
    table: str, kolektorsdd: Path, mobilenet_weights: Path, tmp_path: Path
) -> None:
    output = _run_smoke(table, kolektorsdd.parent, mobilenet_weights, tmp_path)
    assert "running" in output
    frame = pd.read_csv(tmp_path / f"{table}.csv", keep_default_na=False)
    expected_methods = {
        "table2": {"LDKNN (K=5)", "PatchCore", "LDKNN (variable K)", "DefectMaker", "REB (K=5)"}
        | {"REB (variable K)"},
        "table6": set(SCORERS.values()),
        "fig4": {"LDKNN", "PatchCore"},
        "fig5": {"KNN", "LDKNN"},
    }[table]
    assert set(frame["method"]) == expected_methods
    metrics = {"image_auroc", "pixel_auroc"} | ({"images_per_second"} if table == "fig4" else set())
    metrics |= {"k"} if table == "table2" else set()  # the chosen variable K
    assert set(frame["metric"]) == metrics
    assert all(math.isfinite(v) and v > 0 for v in frame["value"])
    aurocs = frame[frame["metric"] != "images_per_second"]["value"]
    assert (aurocs <= 100).all()
    # Better than chance on real cracks, for every method and setting.
    assert (frame.query("metric == 'image_auroc'")["value"] > 55).all()
    if table == "fig4":
        assert sorted(set(frame["parameter"])) == [0.01, 0.1]
        assert (tmp_path / "fig4.png").stat().st_size > 0
    if table == "fig5":
        assert sorted(set(frame["parameter"])) == [1, 9, 33]
        assert (tmp_path / "fig5.png").stat().st_size > 0
    logs = sorted((tmp_path / "runs").glob("*.json"))
    assert len(logs) == frame["job"].nunique()
    for path in logs:
        log = json.loads(path.read_text())
        assert (log["n_train"], log["n_test"]) == (16, 24)
        assert log["finite"]
    report = (tmp_path / f"{table}.md").read_text()
    assert "| ours | published | difference |" in report
    assert "kolektorsdd" in report
    # Resumable: a second call finds every job in the CSV and runs nothing.
    again = _run_smoke(table, kolektorsdd.parent, mobilenet_weights, tmp_path)
    assert "running" not in again
    assert again.count("skipped") == len(logs)
    assert pd.read_csv(tmp_path / f"{table}.csv", keep_default_na=False).equals(frame)
