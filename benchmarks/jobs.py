"""The one job builder: job kinds (a table's ``jobs``) → specs, one per (dataset, category, model)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import settings as papers
from .settings import BACKBONES, Settings
from .tables import TABLES, Table

PDAE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pdae" / "mvtec.yaml"


def _job(model: str, key: str, method: str, init_args: dict, representation: str = "") -> dict:
    return dict(model=model, key=key, method=method, representation=representation, init_args=init_args)


def _k(table: Table, settings: Settings) -> int:
    return table.k or BACKBONES[settings.backbone]["k"]


def _finetune(settings: Settings) -> dict:
    return dict(papers.SMOKE_FINETUNE if settings.smoke else papers.FINETUNE)


def ldknn(table: Table, settings: Settings) -> dict:
    """LDKNN on the full bank with the table's fixed K, on the backbone's tagged weights."""
    backbone, k = BACKBONES[settings.backbone], _k(table, settings)
    init_args = {"backbone": backbone["weights"], "layers": backbone["layers"], "k": k, "coreset_ratio": 1.0}
    return _job("Ldknn", "ldknn", f"LDKNN (K={k})", {**init_args, "embedding_dim": backbone["dim"]})


def patchcore(table: Table, settings: Settings) -> dict:
    """Anomalib's Patchcore, 9 neighbours for its reweighting."""
    backbone = BACKBONES[settings.backbone]
    init_args = {"backbone": backbone["weights"], "layers": backbone["layers"], "num_neighbors": 9}
    init_args["coreset_sampling_ratio"] = settings.patchcore_ratio
    return _job("Patchcore", "patchcore", "PatchCore", init_args)


def ldknn_variable_k(table: Table, settings: Settings) -> dict:
    """LDKNN with K chosen per category on training images only (benchmarks/variable_k.py)."""
    job = ldknn(table, settings)
    job.update(key="ldknn_variable_k", method="LDKNN (variable K)")
    job["init_args"]["k"] = papers.VARIABLE_K
    return job


def reb(table: Table, settings: Settings) -> dict:
    """DefectMaker (KNN, K=1) and REB (fixed and, with candidates, variable K) on one bank, fitted as KNN."""
    k, job = _k(table, settings), ldknn(table, settings)
    variants = [
        dict(method="DefectMaker", scorer="knn", k=1),
        dict(method=f"REB (K={k})", scorer="ldknn", k=k),
    ]
    variants.append(dict(method="REB (variable K)", scorer="ldknn", k=papers.VARIABLE_K))
    job.update(key="reb", method=f"REB (K={k})", finetune=_finetune(settings))
    job["variants"] = variants if table.datasets[0] in papers.K_CANDIDATES else variants[:2]
    job["init_args"] |= {"scorer": "knn", "k": table.k or 1}
    return job


def knn_variants(table: Table, settings: Settings) -> dict:
    """Table 6's scorers on one ImageNet bank."""
    k, job = BACKBONES[settings.backbone]["k"], ldknn(table, settings)
    job.update(key="knn_variants", method="LDKNN", representation="ImageNet")
    job["variants"] = [{"method": name, "scorer": scorer, "k": k} for scorer, name in papers.SCORERS.items()]
    return job


def knn_variants_defectmaker(table: Table, settings: Settings) -> dict:
    """Table 6's scorers on the DefectMaker-fine-tuned bank (table2's REB weights)."""
    job = knn_variants(table, settings)
    job.update(key="knn_variants_defectmaker", representation="DefectMaker", finetune=_finetune(settings))
    return job


def k_sweep(table: Table, settings: Settings) -> dict:
    """Fig. 5: KNN and LDKNN for every K of the figure on one bank."""
    job = ldknn(table, settings)
    job.update(key="k_sweep", method="LDKNN")
    job["variants"] = [
        {"method": label, "scorer": scorer, "k": k, "parameter": k}
        for scorer, label in (("knn", "KNN"), ("ldknn", "LDKNN"))
        for k in settings.k_values
    ]
    return job


def _coreset_sweep(job: dict, argument: str, settings: Settings) -> dict:
    job.update(key=job["key"] + "_coreset_sweep", report_speed=True)
    sweep = [
        dict(method=job["method"], parameter=ratio, init_args={argument: ratio})
        for ratio in settings.coreset_ratios
    ]
    return {**job, "sweep": sweep}


def ldknn_coreset_sweep(table: Table, settings: Settings) -> dict:
    """Fig. 4: LDKNN at every coreset ratio, with test images per second."""
    return _coreset_sweep({**ldknn(table, settings), "method": "LDKNN"}, "coreset_ratio", settings)


def patchcore_coreset_sweep(table: Table, settings: Settings) -> dict:
    """Fig. 4: Patchcore at every coreset ratio, with test images per second."""
    return _coreset_sweep(patchcore(table, settings), "coreset_sampling_ratio", settings)


def patchcore_s(table: Table, settings: Settings) -> dict:
    """PatchCore S1-S3: one fit per coreset ratio of the paper, 256 → 224 centre crop (scaled)."""
    job = patchcore(table, settings)
    job.update(key="patchcore_s", pro=True, center_crop=settings.image_size * 7 // 8)
    job["sweep"] = [
        {"method": f"PatchCore-{100 * ratio:g}%", "init_args": {"coreset_sampling_ratio": ratio}}
        for ratio in settings.patchcore_s_ratios
    ]
    return job


def table5(table: Table, settings: Settings) -> list[dict]:
    """GDE, KNN and LDKNN per representation; the KNN/LDKNN job fine-tunes, GDE's reuses its weights."""
    backbone = BACKBONES[settings.backbone]
    gde_args = {"backbone": backbone["weights"], "layer": backbone["last"]}
    gde = _job("Gde", "gde", "GDE", {**gde_args, "layers": backbone["layers"]}, "ImageNet")
    knn = knn_variants(table, settings)
    knn["key"] = "knn_ldknn"
    knn["variants"] = [v for v in knn["variants"] if v["scorer"] in ("knn", "ldknn")]
    jobs = [gde, knn]
    for representation, defects in papers.TABLE5_DEFECTS.items():
        if settings.smoke and defects not in papers.TABLE5_SMOKE_DEFECTS:
            continue
        finetune = _finetune(settings)
        if defects != "defectmaker":
            finetune["defects"] = defects
        if defects == "draem" and settings.textures is not None:
            finetune["texture_dir"] = settings.textures
        tuned = {"representation": representation, "finetune": finetune}
        jobs += [{**knn, **tuned, "key": f"knn_ldknn_{defects}"}, {**gde, **tuned, "key": f"gde_{defects}"}]
    return jobs


def pdae(table: Table, settings: Settings) -> dict:
    """Pdae with configs/pdae/mvtec.yaml's arguments and batch size (smoke: one small CNN)."""
    import yaml

    config = yaml.safe_load(PDAE_CONFIG.read_text())
    init_args = {**config["model"]["init_args"], "image_size": [settings.image_size] * 2}
    if settings.smoke:
        backbone = BACKBONES[settings.backbone]
        init_args |= {"backbones": [[backbone["weights"], backbone["layers"]]], "hidden_widths": [64]}
        init_args |= {"lr_milestones": []}
    batch_size = config["data"]["init_args"]["train_batch_size"]
    max_epochs = 1 if settings.smoke else config["trainer"]["max_epochs"]
    return {**_job("Pdae", "pdae", "PDAE", init_args), "batch_size": batch_size, "max_epochs": max_epochs}


def ldknn_costs(table: Table, settings: Settings) -> dict:
    """Ldknn at a 10 % coreset, scored by LDKNN (K=5) and plain 1-NN on the same bank."""
    job = ldknn(table, settings)
    job.update(key="ldknn_costs", method="LDKNN", report_speed=True, report_costs=True)
    job["init_args"] |= {"coreset_ratio": 0.1, "aggregation": "reference"}
    job["variants"] = [
        dict(method="LDKNN (K=5)", scorer="ldknn", k=5),
        dict(method="1-NN", scorer="knn", k=1),
    ]
    return job


def ldknn_fast_fit(table: Table, settings: Settings) -> dict:
    """:func:`ldknn_costs` with the approximate (bfloat16-ranked) local densities, LDKNN scoring only."""
    job = ldknn_costs(table, settings)
    job.update(key="ldknn_fast_fit", method="LDKNN (K=5), approximate densities")
    job["init_args"] |= {"density_search": "approximate"}
    job["variants"] = job["variants"][:1]
    job["variants"][0] = {**job["variants"][0], "method": job["method"]}
    return job


def patchcore_costs(table: Table, settings: Settings) -> dict:
    """Anomalib's Patchcore on the same input, with its fit time and peak memory."""
    costs = {"key": "patchcore_costs", "report_speed": True, "report_costs": True}
    return {**patchcore(table, settings), **costs}


KINDS: dict[str, Callable[[Table, Settings], dict | list[dict]]] = {
    function.__name__: function
    for function in (
        ldknn, patchcore, ldknn_variable_k, reb, knn_variants, knn_variants_defectmaker, k_sweep,
        ldknn_coreset_sweep, patchcore_coreset_sweep, patchcore_s, table5, pdae, ldknn_costs,
        ldknn_fast_fit, patchcore_costs,
    )
}  # fmt: skip


def model_jobs(table: str, settings: Settings) -> list[dict]:
    """The model part of every job of a table (the same for every category)."""
    spec, jobs = TABLES[table], []
    for kind in spec.job_kinds(settings.smoke):
        built = KINDS[kind](spec, settings)
        jobs += built if isinstance(built, list) else [built]
    if spec.anomaly_types:
        jobs = [{**job, "anomaly_types": spec.anomaly_types} for job in jobs]
    return jobs


def dataset_categories(table: str, smoke: bool, categories: list[str] | None) -> list[tuple[str, str]]:
    """(dataset, category) pairs to run; the smoke mode runs the stand-in once."""
    if smoke or TABLES[table].datasets == (papers.SMOKE_DATASET,):
        return [(papers.SMOKE_DATASET, papers.SMOKE_DATASET)]
    pairs = [(dataset, c) for dataset in TABLES[table].datasets for c in papers.CATEGORIES[dataset]]
    if categories:
        if unknown := sorted(set(categories) - {c for _, c in pairs}):
            msg = f"categories {unknown} are not in {table}; allowed: {[c for _, c in pairs]}"
            raise ValueError(msg)
        pairs = [pair for pair in pairs if pair[1] in categories]
    return pairs


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
    """Every job of a table, as specs for :mod:`benchmarks.job`.

    Example:
        >>> specs = build_specs("table4", Settings(backbone="wide_resnet50_2"), Path("data"), Path("runs"))
        >>> specs[0]["job"], specs[0]["init_args"]["backbone"]
        ('table4.btad.01.wide_resnet50_2.ldknn', 'wide_resnet50_2.tv_in1k')
    """
    # Tables sharing a results CSV (PatchCore S1-S3) share their jobs, hence the CSV's name here.
    prefix = TABLES[table].results or table
    common = {"backbone": settings.backbone, "image_size": settings.image_size, "n_train": settings.n_train}
    common |= {"n_test": settings.n_test, "num_workers": 0 if settings.smoke else 4, "seed": seed}
    common |= {"accelerator": "cpu" if settings.smoke else accelerator, "weights": weights and str(weights)}
    specs = []
    for dataset, category in dataset_categories(table, settings.smoke, categories):
        stand_in = dataset == papers.SMOKE_DATASET
        datamodule = "MVTecAD" if stand_in else papers.DATAMODULES[dataset]
        root = data_root if stand_in else data_root / papers.FOLDERS[dataset]
        for model in model_jobs(table, settings):
            job_id = f"{prefix}.{dataset}.{category}.{settings.backbone}.{model['key']}"
            where = {"table": prefix, "job": job_id, "dataset": dataset, "datamodule": datamodule}
            where |= {"root": str(root), "category": category, "log": str(runs_dir / f"{job_id}.json")}
            batch_size = model.get("batch_size") or (16 if settings.smoke else 32)
            finetuned_dir = str(runs_dir.parent / "finetuned")
            specs.append(
                {**model, **common, **where, "batch_size": batch_size, "finetuned_dir": finetuned_dir}
            )
    return specs
