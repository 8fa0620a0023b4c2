"""The reproducible tables as data: published CSV, datasets, job kinds (:mod:`benchmarks.jobs`), settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .settings import BTAD_K, LOCO_K, LOCO_TYPES


@dataclass(frozen=True)
class Table:
    """A reproducible table or figure: its published CSV, the join keys to it, its rows as jobs."""

    published: str | None
    datasets: tuple[str, ...]
    join: tuple[str, ...]
    description: str
    jobs: tuple[str, ...]
    smoke_jobs: tuple[str, ...] | None = None
    # Results CSV (and job-id prefix) shared with other tables; None: the table's own name.
    results: str | None = None
    # Only these metrics go into the report (None: all the jobs give).
    metrics: tuple[str, ...] | None = None
    # Full-run defaults: the paper's backbone (a label only for pdae) and input size.
    backbone: str = "resnet18"
    image_size: int = 256
    # The table's fixed K when it is one per dataset (REB §4.2), and MVTec LOCO's anomaly types.
    k: int | None = None
    anomaly_types: dict[str, str] | None = None
    # Overrides of the Settings, full runs and smoke mode.
    settings: dict[str, Any] = field(default_factory=dict)
    smoke_settings: dict[str, Any] = field(default_factory=dict)

    def job_kinds(self, smoke: bool) -> tuple[str, ...]:
        """The job kinds a full run (or the smoke mode) runs per category."""
        return self.smoke_jobs if smoke and self.smoke_jobs is not None else self.jobs


REB = ("dataset", "backbone", "method", "category", "metric")
LDKNN_REB = ("ldknn", "ldknn_variable_k", "patchcore", "reb")


def _patchcore_supplement(number: int, metric: str, what: str) -> Table:
    """PatchCore's Table S<number>: one metric of the jobs all three tables share."""
    return Table(
        published=f"patchcore_table_s{number}",
        datasets=("mvtec_ad",),
        join=REB,
        description=f"PatchCore Table S{number} (MVTec AD {what}): anomalib's PatchCore, WRN-50",
        jobs=("patchcore_s",),
        results="patchcore_supplement",
        metrics=(metric,),
        backbone="wide_resnet50_2",
        smoke_settings={"patchcore_s_ratios": (0.01,)},
    )


TABLES = {
    "table2": Table(
        published="reb_table2",
        datasets=("mvtec_ad",),
        join=REB,
        description=(
            "REB Table 2 (MVTec AD): LDKNN (fixed and variable K), DefectMaker, REB (fixed and "
            "variable K) and anomalib's PatchCore"
        ),
        jobs=("ldknn", "patchcore", "ldknn_variable_k", "reb"),
    ),
    "table6": Table(
        published="reb_table6",
        datasets=("mvtec_ad", "mvtec_loco"),
        join=("dataset", "representation", "method", "category", "metric"),
        description=(
            "REB Table 6: KNN, Kth-NN, LOF, LDOF and LDKNN on one memory bank, ImageNet and "
            "DefectMaker-fine-tuned weights"
        ),
        jobs=("knn_variants", "knn_variants_defectmaker"),
    ),
    "fig4": Table(
        published=None,
        datasets=("mvtec_ad",),
        join=(),
        description="REB Fig. 4: image AUROC against test images per second over coreset ratios",
        jobs=("ldknn_coreset_sweep", "patchcore_coreset_sweep"),
    ),
    "fig5": Table(
        published=None,
        datasets=("mvtec_ad", "mvtec_loco", "btad"),
        join=(),
        description="REB Fig. 5: image AUROC against K for KNN and LDKNN on one memory bank",
        jobs=("k_sweep",),
    ),
    "table3": Table(
        published="reb_table3",
        datasets=("mvtec_loco",),
        join=REB,
        description=(
            "REB Table 3 (MVTec LOCO): LDKNN (K=45 and variable K), DefectMaker, REB (K=45 and "
            "variable K) and anomalib's PatchCore; image AUROC per class, structural and logical"
        ),
        jobs=LDKNN_REB,
        smoke_jobs=LDKNN_REB[:2],
        k=LOCO_K,
        anomaly_types=LOCO_TYPES,
    ),
    "table4": Table(
        published="reb_table4",
        datasets=("btad",),
        join=("dataset", "method", "category", "metric"),
        description="REB Table 4 (BTAD): LDKNN (K=57) and anomalib's PatchCore, image and pixel AUROC",
        jobs=(LDKNN_REB[0], *LDKNN_REB[2:]),
        smoke_jobs=LDKNN_REB[:1],
        backbone="wide_resnet50_2",
        k=BTAD_K,
    ),
    "table5": Table(
        published="reb_table5",
        datasets=("mvtec_ad",),
        join=("dataset", "backbone", "representation", "method", "category", "metric"),
        description=(
            "REB Table 5 (MVTec AD): GDE, KNN and LDKNN on the ImageNet, DRAEM, CutPaste and "
            "DefectMaker representations"
        ),
        jobs=("table5",),
    ),
    **{
        f"patchcore_s{number}": _patchcore_supplement(number, metric, what)
        for number, metric, what in (
            (1, "image_auroc", "image AUROC"),
            (2, "pixel_auroc", "pixel AUROC"),
            (3, "pro", "PRO, FPR up to 30 %"),
        )
    },
    "pdae": Table(
        published="pdae_headline",
        datasets=("mvtec_ad",),
        join=("dataset", "method", "category", "metric"),
        description="PDAE headline (MVTec AD mean image and pixel AUROC) with configs/pdae/mvtec.yaml",
        jobs=("pdae",),
        backbone="densenet201+cait_xxs24_384",
        image_size=384,
        smoke_settings={"image_size": 128},
    ),
    "ldknn_vs_patchcore": Table(
        published=None,
        datasets=("kolektorsdd",),
        join=(),
        description=(
            "Ldknn against anomalib's Patchcore on KolektorSDD: fit time, test images per second, "
            "peak memory, AUROC; LDKNN against 1-NN scoring on one bank"
        ),
        jobs=("ldknn_costs", "patchcore_costs"),
        backbone="mobilenetv2_100",
        # anomalib's greedy coreset at 10 % takes about an hour on 2 cores: Patchcore runs at 1 %.
        settings={"patchcore_ratio": 0.01},
    ),
    "fit_speed": Table(
        published=None,
        datasets=("kolektorsdd",),
        join=(),
        description=(
            "Ldknn's fit (exact and approximate local densities) against anomalib's Patchcore at the "
            "same 10 % coreset on KolektorSDD: fit seconds, peak memory, AUROC"
        ),
        jobs=("ldknn_costs", "ldknn_fast_fit", "patchcore_costs"),
        backbone="mobilenetv2_100",
        settings={"patchcore_ratio": 0.1},
    ),
}
