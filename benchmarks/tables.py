"""What each reproducible table runs: datasets, categories, models and their settings.

A table expands into jobs, one per (dataset, category, model); each job is one process
(:mod:`benchmarks.job`) and yields rows labelled as in the published CSV, so that
:mod:`benchmarks.report` can put our number beside the authors'.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = {
    "mvtec_ad": (
        "carpet", "grid", "leather", "tile", "wood",
        "bottle", "cable", "capsule", "hazelnut", "metal_nut",
        "pill", "screw", "toothbrush", "transistor", "zipper",
    ),
    "mvtec_loco": ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors"),
    "btad": ("01", "02", "03"),
}  # fmt: skip
DATAMODULES = {"mvtec_ad": "MVTecAD", "mvtec_loco": "MVTecLOCO", "btad": "BTech"}
FOLDERS = {"mvtec_ad": "MVTecAD", "mvtec_loco": "MVTec_LOCO", "btad": "BTech"}
# REB's layers and fixed K per backbone (Table 2: K=5 on Res18, K=9 on WR50).
BACKBONES = {
    "resnet18": {"layers": ["layer2", "layer3"], "k": 5},
    "wide_resnet50_2": {"layers": ["layer2", "layer3"], "k": 9},
    "mobilenetv2_100": {"layers": ["blocks.2", "blocks.4"], "k": 5},
}
# Table 6's KNN variants, as the published CSV labels them.
SCORERS = {"knn": "KNN", "kth_nn": "Kth-NN", "lof": "LOF", "ldof": "LDOF", "ldknn": "LDKNN"}
# The smoke mode's stand-in: one MVTec-layout category beside the datasets.
SMOKE_DATASET = "kolektorsdd"


@dataclass(frozen=True)
class Settings:
    """How a table is run: backbone, input size, subset sizes, coreset ratio of Patchcore."""

    backbone: str = "resnet18"
    image_size: int = 256
    n_train: int | None = None
    n_test: int | None = None
    patchcore_ratio: float = 0.1
    smoke: bool = False
    # REB Fig. 5: K from 1 to 57; Fig. 4: coreset ratios 100, 50, 10, 1, 0.1 %.
    k_values: tuple[int, ...] = tuple(range(1, 58, 4))
    coreset_ratios: tuple[float, ...] = (1.0, 0.5, 0.1, 0.01, 0.001)


@dataclass(frozen=True)
class Table:
    """A reproducible table or figure: its published CSV, the join keys to it, its datasets."""

    name: str
    published: str | None
    datasets: tuple[str, ...]
    join: tuple[str, ...]
    description: str


TABLES = {
    "table2": Table(
        name="table2",
        published="reb_table2",
        datasets=("mvtec_ad",),
        join=("dataset", "backbone", "method", "category", "metric"),
        description=(
            "REB Table 2 (MVTec AD): LDKNN (fixed and variable K), DefectMaker, REB (fixed and "
            "variable K) and anomalib's PatchCore"
        ),
    ),
    "table6": Table(
        name="table6",
        published="reb_table6",
        datasets=("mvtec_ad", "mvtec_loco"),
        join=("dataset", "representation", "method", "category", "metric"),
        description=(
            "REB Table 6: KNN, Kth-NN, LOF, LDOF and LDKNN on one memory bank, ImageNet and "
            "DefectMaker-fine-tuned weights"
        ),
    ),
    "fig4": Table(
        name="fig4",
        published=None,
        datasets=("mvtec_ad",),
        join=(),
        description="REB Fig. 4: image AUROC against test images per second over coreset ratios",
    ),
    "fig5": Table(
        name="fig5",
        published=None,
        datasets=("mvtec_ad", "mvtec_loco", "btad"),
        join=(),
        description="REB Fig. 5: image AUROC against K for KNN and LDKNN on one memory bank",
    ),
}


def _ldknn_job(settings: Settings) -> dict:
    backbone = BACKBONES[settings.backbone]
    return {
        "model": "Ldknn",
        "key": "ldknn",
        "method": f"LDKNN (K={backbone['k']})",
        "representation": "",
        "init_args": {
            "backbone": settings.backbone,
            "layers": backbone["layers"],
            "k": backbone["k"],
            "coreset_ratio": 1.0,
        },
    }


def _patchcore_job(settings: Settings) -> dict:
    return {
        "model": "Patchcore",
        "key": "patchcore",
        "method": "PatchCore",
        "representation": "",
        "init_args": {
            "backbone": settings.backbone,
            "layers": BACKBONES[settings.backbone]["layers"],
            "coreset_sampling_ratio": settings.patchcore_ratio,
            "num_neighbors": 9,
        },
    }


def _variants_job(settings: Settings) -> dict:
    k = BACKBONES[settings.backbone]["k"]
    job = _ldknn_job(settings)
    job.update(
        key="knn_variants",
        method="LDKNN",
        representation="ImageNet",
        variants=[{"method": label, "scorer": scorer, "k": k} for scorer, label in SCORERS.items()],
    )
    return job


# REB's DefectMaker fine-tuning (SPEC §4): the paper's schedule, 48 base images (×7 variants)
# per forward at the table's input size; the smoke mode's: 3 updates of 28 images at 64×64.
# "variable" as a K: chosen per category on training images only (benchmarks/variable_k.py).
# See benchmarks/reb_rows.py.
FINETUNE = {
    "num_updates": 300, "images_per_update": 1000, "freeze_updates": 40, "restart_period": 330,
    "batch_size": 48,
}  # fmt: skip
SMOKE_FINETUNE = {
    "num_updates": 3, "images_per_update": 28, "freeze_updates": 1, "restart_period": 4, "batch_size": 4,
    "image_size": 64,
}  # fmt: skip
VARIABLE_K = "variable"


def _finetune(settings: Settings) -> dict:
    return dict(SMOKE_FINETUNE if settings.smoke else FINETUNE)


def _ldknn_variable_k_job(settings: Settings) -> dict:
    job = _ldknn_job(settings)
    job.update(key="ldknn_variable_k", method="LDKNN (variable K)")
    job["init_args"] = {**job["init_args"], "k": VARIABLE_K}
    return job


def _reb_job(settings: Settings) -> dict:
    """DefectMaker (plain KNN, K=1) and REB (LDKNN, fixed and variable K) on one fine-tuned bank."""
    k = BACKBONES[settings.backbone]["k"]
    job = _ldknn_job(settings)
    job.update(
        key="reb",
        method=f"REB (K={k})",
        finetune=_finetune(settings),
        variants=[
            {"method": "DefectMaker", "scorer": "knn", "k": 1},
            {"method": f"REB (K={k})", "scorer": "ldknn", "k": k},
            {"method": "REB (variable K)", "scorer": "ldknn", "k": VARIABLE_K},
        ],
    )
    return job


def _defectmaker_variants_job(settings: Settings) -> dict:
    job = _variants_job(settings)
    job.update(key="knn_variants_defectmaker", representation="DefectMaker", finetune=_finetune(settings))
    return job


def _k_sweep_job(settings: Settings) -> dict:
    job = _ldknn_job(settings)
    job.update(
        key="k_sweep",
        method="LDKNN",
        variants=[
            {"method": label, "scorer": scorer, "k": k, "parameter": k}
            for scorer, label in (("knn", "KNN"), ("ldknn", "LDKNN"))
            for k in settings.k_values
        ],
    )
    return job


def _coreset_sweep(job: dict, argument: str, settings: Settings) -> dict:
    job["key"] += "_coreset_sweep"
    job["report_speed"] = True
    job["sweep"] = [
        {"method": job["method"], "parameter": ratio, "init_args": {argument: ratio}}
        for ratio in settings.coreset_ratios
    ]
    return job


def model_jobs(table: str, settings: Settings) -> list[dict]:
    """The model part of every job of a table (the same for every category)."""
    if table == "table2":
        return [
            _ldknn_job(settings),
            _patchcore_job(settings),
            _ldknn_variable_k_job(settings),
            _reb_job(settings),
        ]
    if table == "table6":
        return [_variants_job(settings), _defectmaker_variants_job(settings)]
    if table == "fig4":
        ldknn = {**_ldknn_job(settings), "method": "LDKNN"}
        return [
            _coreset_sweep(ldknn, "coreset_ratio", settings),
            _coreset_sweep(_patchcore_job(settings), "coreset_sampling_ratio", settings),
        ]
    if table == "fig5":
        return [_k_sweep_job(settings)]
    msg = f"table must be one of {sorted(TABLES)}, got {table!r}"
    raise ValueError(msg)


def dataset_categories(table: str, smoke: bool, categories: list[str] | None) -> list[tuple[str, str]]:
    """(dataset, category) pairs to run; the smoke mode runs the stand-in once."""
    if smoke:
        return [(SMOKE_DATASET, SMOKE_DATASET)]
    pairs = [(dataset, c) for dataset in TABLES[table].datasets for c in CATEGORIES[dataset]]
    if categories:
        unknown = sorted(set(categories) - {c for _, c in pairs})
        if unknown:
            msg = f"categories {unknown} are not in {table}; allowed: {[c for _, c in pairs]}"
            raise ValueError(msg)
        pairs = [pair for pair in pairs if pair[1] in categories]
    return pairs
