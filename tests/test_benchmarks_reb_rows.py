"""REB Table 2/6 rows: variable K chosen without test labels, DefectMaker fine-tuning reused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from anomalib.data import MVTecAD
from safetensors.torch import save_file

from anomalib_pdae.models.ldknn import LdknnModel, LdknnSettings
from anomalib_pdae.models.ldknn.scorers import fit_statistics
from benchmarks.build import build_model as _model
from benchmarks.jobs import model_jobs
from benchmarks.published import load_published
from benchmarks.reb_rows import _record, prepare
from benchmarks.report import chosen_k_markdown
from benchmarks.settings import BACKBONES, Settings
from benchmarks.variable_k import (
    K_CANDIDATES,
    choose_k,
    local_densities,
    pick_k,
    pseudo_anomalies,
    split_holdout,
    validation_aurocs,
    validation_scores,
)

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "benchmarks" / "results" / "smoke"
LAYERS = ["layer2", "layer3"]


def test_pick_k_takes_the_best_then_the_fixed_k_then_the_smallest() -> None:
    assert pick_k({3: 80.0, 5: 90.0, 7: 95.0, 9: 85.0}, default=5) == 7
    assert pick_k({3: 95.0, 5: 90.0, 7: 95.0}, default=7) == 7
    assert pick_k({3: 90.0, 5: 95.0, 7: 95.0, 9: 95.0}, default=3) == 5


def test_constructed_bank_where_only_k5_separates_the_validation_set() -> None:
    # 1-D bank: a 4-point cluster at 0, a 10-point cluster at 20, a 6-point cluster at 100.
    # Normals sit 2 away from the first cluster, anomalies 1 away from the last. For K <= 3 the
    # local densities are ~0 and the normals' larger distance wins; from K = 4 the first
    # cluster's density takes in the cluster at 20 (400 away) and pulls the normals down; from
    # K = 6 the last cluster's takes in that cluster too (6400 away) and pulls the anomalies
    # further down. Only K = 5 of REB's candidates ranks every anomaly above every normal.
    def cluster(centre: float, size: int) -> list[float]:
        return [centre + 0.01 * i for i in range(size)]

    bank = torch.tensor(cluster(0, 4) + cluster(20, 10) + cluster(100, 6)).reshape(-1, 1)
    normal = torch.tensor([-2.0, -1.9]).reshape(-1, 1, 1, 1)
    anomalous = torch.tensor([101.05, 101.0]).reshape(-1, 1, 1, 1)
    settings = LdknnSettings(image_score="max")
    aurocs = validation_aurocs(bank, bank, normal, anomalous, (3, 5, 7, 9, 11), settings)
    assert aurocs == {3: 0.0, 5: 100.0, 7: 0.0, 9: 0.0, 11: 0.0}
    assert pick_k(aurocs, default=9) == 5


@pytest.mark.parametrize("distance", ["squared", "euclidean"])
def test_local_densities_of_all_k_equal_one_fit_each(distance: str) -> None:
    generator = torch.Generator().manual_seed(0)
    bank = torch.randn(300, 8, generator=generator)
    memory = bank[::3]
    densities = local_densities(memory, bank, (1, 3, 7), distance)
    for k, table in densities.items():
        expected = fit_statistics("ldknn", memory, bank, k, distance, progress=False)["local_density"]
        torch.testing.assert_close(table, expected)


@pytest.mark.parametrize("k", [1, 3])
def test_validation_scores_equal_the_fitted_model(k: int) -> None:
    torch.manual_seed(0)
    model = LdknnModel(LdknnSettings(backbone="resnet18", layers=LAYERS, k=k), pre_trained=False)
    train = torch.rand(3, 3, 64, 64)
    queries = torch.rand(4, 3, 64, 64)
    bank = model.train()(train)
    model.fit(bank, progress=False)
    expected = model.eval()(queries).pred_score
    scores = validation_scores(bank, bank, model.embed(queries), (k, 5))
    torch.testing.assert_close(scores[k], expected, rtol=1e-5, atol=1e-5)


def test_split_holdout_is_seeded_and_disjoint() -> None:
    bank, held = split_holdout(24, 0.2, seed=3)
    assert len(held) == 5 and sorted(bank + held) == list(range(24))
    assert split_holdout(24, 0.2, seed=3) == (bank, held)
    assert len(split_holdout(5, 0.2, seed=0)[1]) == 2  # at least two normals
    with pytest.raises(ValueError, match="at least"):
        split_holdout(2, 0.2, seed=0)


def test_pseudo_anomalies_are_six_defects_of_every_image() -> None:
    images = torch.rand(3, 3, 64, 64) * 0.2 + 0.4
    anomalies = pseudo_anomalies(images, np.random.default_rng(0))
    assert anomalies.shape == (18, 3, 64, 64)
    bases = (images * 255).round() / 255
    differences = (anomalies - bases.repeat_interleave(6, dim=0)).abs().amax(dim=(1, 2, 3))
    # Every variant is changed beyond 8-bit rounding. A clump blended (w in [0.5, 1]) with a cut
    # from another image of the same grey noise can differ by only a few levels.
    assert (differences > 4 / 255).all()


class _Poisoned:
    """Stands in for the test and validation splits: any use fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the test split was read ({name})")

    def __len__(self) -> int:
        raise AssertionError("the test split was read (len)")

    def __getitem__(self, index: int):
        raise AssertionError("the test split was read (item)")


def _datamodule(root: Path, batch_size: int = 4) -> MVTecAD:
    return MVTecAD(
        root=root,
        category="synthetic",
        train_batch_size=batch_size,
        eval_batch_size=batch_size,
        num_workers=0,
    )


def _spec(tmp_path: Path, **overrides) -> dict:
    spec = {
        "model": "Ldknn",
        "method": "LDKNN (variable K)",
        "representation": "",
        "init_args": {"backbone": "resnet18", "layers": LAYERS, "k": "variable", "pre_trained": False},
        "dataset": "kolektorsdd",
        "category": "synthetic",
        "backbone": "resnet18",
        "image_size": 32,
        "n_train": None,
        "batch_size": 8,
        "accelerator": "cpu",
        "weights": None,
        "seed": 0,
        "log": str(tmp_path / "results" / "runs" / "job.json"),
    }
    spec.update(overrides)
    return spec


def test_variable_k_never_reads_the_test_split(synthetic_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    datamodule = _datamodule(root)
    datamodule.setup()
    n_train = len(datamodule.train_data)
    # Test images gone from disk, test and validation splits poisoned.
    shutil.rmtree(root / "synthetic" / "test")
    shutil.rmtree(root / "synthetic" / "ground_truth")
    datamodule.test_data = _Poisoned()
    datamodule.val_data = _Poisoned()

    spec, extra = prepare(_spec(tmp_path), datamodule, _model)

    selection = extra["variable_k"]
    assert selection["k"] in K_CANDIDATES["kolektorsdd"]
    assert spec["init_args"]["k"] == selection["k"]
    assert extra["rows"] == [
        {"method": "LDKNN (variable K)", "parameter": "", "metric": "k", "value": float(selection["k"])}
    ]
    assert set(selection["aurocs"]) == {str(k) for k in K_CANDIDATES["kolektorsdd"]}
    assert selection["k"] == pick_k({int(k): v for k, v in selection["aurocs"].items()}, default=5)
    # The selection bank holds the training images minus the held-out ones, 4×4 patches each.
    bank, held = selection["bank_indices"], selection["holdout_indices"]
    assert not set(bank) & set(held) and sorted(bank + held) == list(range(n_train))
    assert selection["bank_patches"] == len(bank) * 4 * 4
    assert (selection["n_normal"], selection["n_anomalous"]) == (len(held), 6 * len(held))


def test_variable_k_variant_of_a_fitted_job_gets_the_chosen_k(synthetic_root: Path, tmp_path: Path) -> None:
    datamodule = _datamodule(synthetic_root)
    variants = [
        {"method": "REB (K=5)", "scorer": "ldknn", "k": 5},
        {"method": "REB (variable K)", "scorer": "ldknn", "k": "variable"},
    ]
    init_args = {"backbone": "resnet18", "layers": LAYERS, "k": 5, "pre_trained": False}
    spec, extra = prepare(_spec(tmp_path, init_args=init_args, variants=variants), datamodule, _model)
    k = extra["variable_k"]["k"]
    assert spec["init_args"]["k"] == 5
    assert spec["variants"] == [variants[0], {**variants[1], "k": k}]
    assert [row["method"] for row in extra["rows"]] == ["REB (variable K)"]


def test_variable_k_on_mvtec_loco_compares_the_loco_candidates(synthetic_root: Path, tmp_path: Path) -> None:
    datamodule = _datamodule(synthetic_root)
    spec, extra = prepare(_spec(tmp_path, dataset="mvtec_loco"), datamodule, _model)
    selection = extra["variable_k"]
    assert K_CANDIDATES["mvtec_loco"] == (39, 45, 51, 57)
    assert set(selection["aurocs"]) == {"39", "45", "51", "57"}
    assert selection["k"] in K_CANDIDATES["mvtec_loco"]
    assert selection["default"] == 45  # ties go to Table 3's fixed K, not the backbone's MVTec AD K
    assert spec["init_args"]["k"] == selection["k"]
    assert selection["bank_patches"] > 57
    # A selection bank of 57 patches or fewer cannot give K = 57 neighbours: refused.
    model = _model(_spec(tmp_path, init_args={**spec["init_args"], "k": 5}))
    four_images = [datamodule.train_data[i] for i in range(4)]  # 2 held out, 2 × 16 bank patches
    with pytest.raises(ValueError, match="K up to 57 needs more than 32 bank patches"):
        choose_k(model.model, four_images, model.pre_processor.transform, K_CANDIDATES["mvtec_loco"], 45)


@pytest.fixture
def random_weights(tmp_path: Path) -> Path:
    """A resnet18 weights file (random initialisation) standing in for ImageNet weights."""
    path = tmp_path / "resnet18_random.safetensors"
    torch.manual_seed(0)
    save_file(timm.create_model("resnet18", pretrained=False).state_dict(), str(path))
    return path


def test_finetuned_backbone_is_trained_once_and_reused(
    synthetic_root: Path, tmp_path: Path, random_weights: Path
) -> None:
    finetune = {
        "num_updates": 2, "images_per_update": 14, "freeze_updates": 1, "restart_period": 3,
        "batch_size": 2, "image_size": 32,
    }  # fmt: skip
    spec = _spec(
        tmp_path,
        method="DefectMaker",
        init_args={"backbone": "resnet18", "layers": LAYERS, "k": 5},
        weights=str(random_weights),
        finetune=finetune,
    )
    datamodule = _datamodule(synthetic_root)
    first, extra = prepare(spec, datamodule, _model)
    path = Path(first["weights"])
    assert path.parent == (tmp_path / "results" / "finetuned").resolve()
    assert extra["finetune"]["reused"] is False and extra["finetune"]["updates"] == 2
    assert extra["rows"] == []
    assert datamodule.train_batch_size == 4  # restored after fine-tuning with batches of 2
    # The fine-tuned weights differ from the ones fine-tuning started from, and load into Ldknn.
    tuned = timm.create_model("resnet18", pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    source = timm.create_model(
        "resnet18", pretrained=True, pretrained_cfg_overlay={"file": str(random_weights)}
    )
    assert not torch.equal(tuned.layer4[0].conv1.weight, source.layer4[0].conv1.weight)
    _model({**first, "image_size": 64})
    stamp = path.stat().st_mtime_ns

    again, extra = prepare(spec, _datamodule(synthetic_root), _model)
    assert again["weights"] == first["weights"] and extra["finetune"]["reused"] is True
    assert path.stat().st_mtime_ns == stamp

    changed = {**spec, "finetune": {**finetune, "num_updates": 1}}
    _, extra = prepare(changed, _datamodule(synthetic_root), _model)
    assert extra["finetune"]["reused"] is False and extra["finetune"]["updates"] == 1


def test_finetuning_record_covers_the_source_weights_content(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "w.safetensors", tmp_path / "b" / "w.safetensors"
    for path, value in ((first, 0.0), (second, 1.0)):
        path.parent.mkdir()
        save_file({"x": torch.full((2,), value)}, str(path))
    spec = _spec(tmp_path, finetune={"num_updates": 1})
    assert _record({**spec, "weights": str(first)}) != _record({**spec, "weights": str(second)})
    assert _record({**spec, "weights": str(first)}) == _record({**spec, "weights": str(first)})


@pytest.mark.parametrize("backbone", ["resnet18", "wide_resnet50_2"])
def test_new_rows_use_the_published_labels(backbone: str) -> None:
    published = load_published()
    settings = Settings(backbone=backbone)
    jobs = model_jobs("table2", settings)
    labels = {v["method"] for job in jobs for v in job.get("variants") or [job]}
    k = BACKBONES[backbone]["k"]
    assert {"DefectMaker", f"REB (K={k})", "REB (variable K)", "LDKNN (variable K)"} <= labels
    table2 = published.query("table == 'reb_table2' and backbone == @backbone")
    assert labels <= set(table2["method"])
    reb = next(job for job in jobs if job["key"] == "reb")
    assert reb["variants"][0] == {"method": "DefectMaker", "scorer": "knn", "k": 1}
    assert reb["finetune"]["num_updates"] == 300

    table6 = published.query("table == 'reb_table6' and representation == 'DefectMaker'")
    (variants,) = [job for job in model_jobs("table6", settings) if job["representation"] == "DefectMaker"]
    assert {v["method"] for v in variants["variants"]} == set(table6["method"])
    assert variants["finetune"] == reb["finetune"]  # same weights file for both tables


def test_chosen_k_section_lists_fixed_and_chosen_k() -> None:
    results = pd.DataFrame(
        {
            "dataset": "mvtec_ad",
            "backbone": "wide_resnet50_2",
            "category": ["carpet", "carpet", "grid"],
            "method": ["LDKNN (variable K)", "LDKNN (variable K)", "REB (variable K)"],
            "metric": ["image_auroc", "k", "k"],
            "value": [99.0, 7.0, 11.0],
        }
    )
    section = chosen_k_markdown(results)
    assert "| mvtec_ad | wide_resnet50_2 | carpet | LDKNN (variable K) | 9 | 7 |" in section
    assert "| mvtec_ad | wide_resnet50_2 | grid | REB (variable K) | 9 | 11 |" in section
    assert chosen_k_markdown(results[results["metric"] != "k"]) == ""
    loco = results.assign(dataset="mvtec_loco", value=[99.0, 39.0, 51.0])
    section = chosen_k_markdown(loco)  # Table 3's fixed K is 45 for every backbone
    assert "| mvtec_loco | wide_resnet50_2 | carpet | LDKNN (variable K) | 45 | 39 |" in section


def test_committed_smoke_results_hold_the_new_rows() -> None:
    table2 = pd.read_csv(SMOKE / "table2.csv", keep_default_na=False)
    new = {"LDKNN (variable K)", "DefectMaker", "REB (K=5)", "REB (variable K)"}
    assert new <= set(table2["method"])
    chosen = table2.query("metric == 'k'")
    assert set(chosen["method"]) == {"LDKNN (variable K)", "REB (variable K)"}
    assert set(chosen["value"]) <= set(K_CANDIDATES["kolektorsdd"])
    assert "Variable K, chosen without test labels" in (SMOKE / "table2.md").read_text()
    table6 = pd.read_csv(SMOKE / "table6.csv", keep_default_na=False)
    assert len(table6.query("representation == 'DefectMaker' and metric == 'image_auroc'")) == 5
    # Fine-tuned once for both tables: table 6's job reused table 2's weights.
    runs = SMOKE / "runs"
    reb = json.loads((runs / "table2.kolektorsdd.kolektorsdd.mobilenetv2_100.reb.json").read_text())
    name = "table6.kolektorsdd.kolektorsdd.mobilenetv2_100.knn_variants_defectmaker.json"
    variants = json.loads((runs / name).read_text())
    assert reb["finetune"]["reused"] is False and variants["finetune"]["reused"] is True
    assert reb["spec"]["weights"] == variants["spec"]["weights"] == reb["finetune"]["weights_file"]


def test_committed_table3_smoke_results_hold_the_variable_k_rows() -> None:
    table3 = pd.read_csv(SMOKE / "table3.csv", keep_default_na=False)
    assert set(table3["method"]) == {"LDKNN (K=45)", "LDKNN (variable K)"}
    chosen = table3.query("metric == 'k'")
    assert chosen["method"].tolist() == ["LDKNN (variable K)"]
    assert set(chosen["value"]) <= set(K_CANDIDATES["kolektorsdd"])
    report = (SMOKE / "table3.md").read_text()
    # The published LDKNN (variable K) totals of REB Table 3 (ResNet-18) are joined.
    rows = [line for line in report.splitlines() if "| LDKNN (variable K) |" in line]
    assert any("| image_auroc |" in row and "| 86.1 |" in row for row in rows)
    assert any("| pixel_auroc |" in row and "| 70.3 |" in row for row in rows)
    assert "Variable K, chosen without test labels" in report
