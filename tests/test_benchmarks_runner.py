"""The benchmark runner: tagged weights in every job, --plan, the missing-input check, failures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmarks import runner
from benchmarks.__main__ import main
from benchmarks.build import weights_record
from benchmarks.jobs import build_specs
from benchmarks.plan import missing, plan
from benchmarks.settings import Settings
from benchmarks.tables import TABLES

TAGS = {"resnet18.tv_in1k", "wide_resnet50_2.tv_in1k", "wide_resnet101_2.tv_in1k"}


@pytest.mark.parametrize("table", sorted(set(TABLES) - {"pdae", "ldknn_vs_patchcore", "fit_speed"}))
@pytest.mark.parametrize("backbone", ["resnet18", "wide_resnet50_2", "wide_resnet101_2"])
def test_every_full_run_job_uses_the_torchvision_weights(table: str, backbone: str) -> None:
    specs = build_specs(table, Settings(backbone=backbone, textures="dtd"), Path("d"), Path("r"))
    tags = {spec["init_args"]["backbone"] for spec in specs}
    assert tags == {f"{backbone}.tv_in1k"} <= TAGS
    assert {weights_record(spec)["weights"] for spec in specs} == tags


def test_weights_record_names_the_tag_and_the_file_hash(tmp_path: Path) -> None:
    file = tmp_path / "w.safetensors"
    file.write_bytes(b"abc")
    spec = {"model": "Ldknn", "init_args": {"backbone": "resnet18.tv_in1k"}, "weights": str(file)}
    assert weights_record(spec) == {
        "weights": "resnet18.tv_in1k",
        "weights_file": "w.safetensors",
        "weights_sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    }
    # An untagged name is recorded with the tag timm resolves it to (not the tv_in1k one).
    untagged = weights_record({"model": "Ldknn", "init_args": {"backbone": "resnet18"}})
    assert untagged["weights"] == "resnet18.a1_in1k" and untagged["weights_sha256"] == ""


def test_a_full_run_with_missing_inputs_stops_before_its_first_job(tmp_path: Path) -> None:
    weights = tmp_path / "absent.safetensors"
    results = tmp_path / "results"
    argv = ["table4", "--data-root", str(tmp_path), "--weights", str(weights), "--results", str(results)]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    message = str(stopped.value)
    for category in ("01", "02", "03"):
        assert f"dataset folder {tmp_path / 'BTech' / category} (btad, category {category})" in message
    assert f"weights file {weights}" in message
    assert not results.exists()  # no CSV, no run folder


def test_hub_weights_must_be_in_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    specs = build_specs("table4", Settings(backbone="wide_resnet50_2"), tmp_path, tmp_path / "runs", ["01"])
    problems = missing(specs)
    expected = "weights wide_resnet50_2.tv_in1k: not in the Hugging Face cache"
    assert any(problem.startswith(expected) for problem in problems)


def test_plan_lists_every_job_with_a_measured_estimate(kolektorsdd: Path, mobilenet_weights: Path) -> None:
    settings = Settings(backbone="mobilenetv2_100", image_size=64, n_train=8, n_test=8, smoke=True)
    specs = build_specs("table3", settings, kolektorsdd.parent, Path("r"), weights=mobilenet_weights)
    text = plan(specs)
    for spec in specs:
        assert spec["job"] in text
    assert text.count("(found)") == 2 and "MISSING" not in text
    assert text.count("(8 training, 8 test images)") == 2
    assert "mobilenetv2_100.tv_in1k.safetensors" in text and "'k': 45" in text
    assert "probed now on this machine" in text and "Total of the jobs estimated" in text
    absent = build_specs("table3", settings, Path("nowhere"), Path("r"), weights=mobilenet_weights)
    assert "MISSING" in plan(absent) and "estimate unknown" in plan(absent)


def _fake_spec(job: str) -> dict:
    return {"job": job, "model": "Ldknn", "table": "t", "dataset": "d", "backbone": "b", "representation": ""}


def test_a_failing_job_is_reported_with_its_tail_while_the_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def fake_execute(spec: dict) -> dict:
        if spec["job"] == "bad":
            return {"error": "exit 1", "output": "line\n" * 30 + "ValueError: broken\n"}
        row = {"method": "M", "parameter": "", "metric": "image_auroc", "value": 90.0}
        log = {"rows": [row], "weights": "x.tv_in1k", "weights_sha256": "", "fit_seconds": [1.0], "runs": []}
        return {"log": {**log, "spec": spec}}

    monkeypatch.setattr(runner, "execute", fake_execute)
    runs = tmp_path / "runs"
    specs = [
        {**_fake_spec(name), "category": name, "log": str(runs / f"{name}.json")}
        for name in ("a", "bad", "c")
    ]
    csv = tmp_path / "t.csv"
    with pytest.raises(RuntimeError, match=r"1 of 3 jobs failed .*: bad"):
        runner.run_table(specs, csv, runs)
    output = capsys.readouterr().out
    assert "bad: FAILED (exit 1)" in output and "ValueError: broken" in output
    assert (runs / "bad.out").read_text().endswith("ValueError: broken\n")
    frame = runner.read_results(csv)
    assert frame["job"].tolist() == ["a", "c"] and set(frame["weights"]) == {"x.tv_in1k"}
    # Resumed: only the failed job runs again.
    with pytest.raises(RuntimeError, match="1 of 1 jobs failed"):
        runner.run_table(specs, csv, runs)
    assert pd.read_csv(csv)["job"].tolist() == ["a", "c"]


def test_cost_rows_take_the_stage_times_the_model_recorded() -> None:
    from types import SimpleNamespace

    import torch

    from anomalib_pdae import Ldknn
    from benchmarks.job import _stage_seconds

    model = Ldknn(backbone="resnet18", pre_trained=False, k=2, coreset_ratio=0.5, embedding_dim=32)
    model.model.train()
    model.model.fit(model.model(torch.rand(1, 3, 64, 64)), progress=False)
    stages = _stage_seconds(model)
    assert set(stages) == {"coreset_seconds", "statistics_seconds", "search_seconds"}
    assert stages["coreset_seconds"] == model.model.timer.seconds["coreset"]
    assert _stage_seconds(SimpleNamespace(model=torch.nn.Linear(1, 1))) == {}  # e.g. Patchcore
