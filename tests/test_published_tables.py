"""Consistency of the published numbers transcribed in benchmarks/published/.

Every published mean is recomputed from the per-class values printed beside it. A printed number
``x`` with ``d`` decimals stands for a true value within ``0.5 * 10**-d`` of ``x``, and the papers
average the true (unrounded) per-class values before rounding the mean. So the mean of the printed
members may differ from the printed mean by at most

    0.5 * 10**-d_mean + average over members of 0.5 * 10**-d_member

(0.05 + 0.05 = 0.1 for the usual one-decimal tables). Anything further off is either a
transcription error or an inconsistency in the paper itself; the latter are pinned below with
the exact mean of their members, so that a change to any member still fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import pytest

from benchmarks.published import COLUMNS, load_published, published_tables

TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
OBJECTS = (
    "bottle",
    "cable",
    "capsule",
    "hazelnut",
    "metal_nut",
    "pill",
    "screw",
    "toothbrush",
    "transistor",
    "zipper",
)
LOCO = ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")
CATEGORIES = {
    "mvtec_ad": {*TEXTURES, *OBJECTS, "mean_texture", "mean_object", "mean"},
    "mvtec_loco": {*LOCO, "mean_structural", "mean_logical", "mean"},
    "btad": {"01", "02", "03", "mean"},
}
# Which printed cells each published aggregate averages. The MVTec LOCO total is the mean of the
# structural and logical means (its per-class columns average to something else).
AGGREGATES = {
    ("mvtec_ad", "mean_texture"): TEXTURES,
    ("mvtec_ad", "mean_object"): OBJECTS,
    ("mvtec_ad", "mean"): TEXTURES + OBJECTS,
    ("btad", "mean"): ("01", "02", "03"),
    ("mvtec_loco", "mean"): ("mean_structural", "mean_logical"),
}
ROW_KEYS = ["table", "dataset", "backbone", "representation", "method", "metric"]

EXPECTED_TABLES = {
    "reb_table2",
    "reb_table3",
    "reb_table4",
    "reb_table5",
    "reb_table6",
    "patchcore_table_s1",
    "patchcore_table_s2",
    "patchcore_table_s3",
    "patchcore_table_s4",
    "pdae_headline",
}
# How many published aggregates have all their members printed, per table: Table 2 has 18
# complete rows x 3 means, Table 3 every row but THFR, S1 all but SPADE/PaDiM/PaDiM*, S2 all but
# CAVGA-Rw.
EXPECTED_CHECKS = {
    "reb_table2": 54,
    "reb_table3": 24,
    "reb_table4": 18,
    "patchcore_table_s1": 12,
    "patchcore_table_s2": 9,
    "patchcore_table_s3": 7,
    "patchcore_table_s4": 6,
}

# Aggregates that disagree with their own members in the paper as printed (checked against the
# seed text by hand): id -> exact mean of the printed members.
PAPER_INCONSISTENCIES = {
    # REB Table 2: 97.3 printed; its own texture (97.9) and object (96.5) means give 96.94.
    "reb_table2/resnet18/FYD/image_auroc/mean": 96.94,
    # REB Table 2: 96.75 printed; its own texture (97.4) and object (96.9) means give 97.06.
    "reb_table2/resnet18/Cflow/image_auroc/mean": 97.06,
    # REB Table 2: 94.9 is DifferNet's own headline; the per-class values REB prints (leather 88,
    # toothbrush 91.9, zipper 88.6 differ from DifferNet's) average 93.2.
    "reb_table2/resnet18/DifferNet/image_auroc/mean": 93.2,
    # REB Table 4 (BTAD): PaDiM (93.7, 97.3) printed, classes give (93.13, 97.0).
    "reb_table4/-/PaDiM/image_auroc/mean": 93.1333333333,
    "reb_table4/-/PaDiM/pixel_auroc/mean": 97.0,
    # REB Table 4 (BTAD): REB's own pixel mean 97.2 printed, classes 94.7, 95.6, 99.7 give 96.67.
    "reb_table4/wide_resnet50_2/REB (K=57)/pixel_auroc/mean": 96.6666666667,
    # PatchCore Table S1: DifferNet 94.9 printed (its own paper's headline); classes give 94.69.
    "patchcore_table_s1/-/DifferNet/image_auroc/mean": 94.6866666667,
}


@dataclass(frozen=True)
class AggregateCheck:
    """One published aggregate and the printed cells it should be the mean of."""

    name: str
    published: float
    published_decimals: int
    members: tuple[tuple[float, int], ...]

    @property
    def recomputed(self) -> float:
        return math.fsum(value for value, _ in self.members) / len(self.members)

    @property
    def tolerance(self) -> float:
        member_rounding = math.fsum(0.5 * 10.0**-d for _, d in self.members) / len(self.members)
        return 0.5 * 10.0**-self.published_decimals + member_rounding


def _printed(row: pd.Series) -> tuple[float, int] | None:
    if math.isnan(row.value):
        return None
    return float(row.value), int(row.decimals)


def aggregate_checks(frame: pd.DataFrame) -> list[AggregateCheck]:
    checks = []
    for key, rows in frame.groupby(ROW_KEYS, sort=False):
        table, dataset, backbone, _, method, metric = key
        cells = {row.category: _printed(row) for row in rows.itertuples()}
        for (aggregate_dataset, aggregate), members in AGGREGATES.items():
            if dataset != aggregate_dataset or cells.get(aggregate) is None:
                continue
            printed = [cells.get(member) for member in members]
            if any(cell is None for cell in printed):
                continue
            published, decimals = cells[aggregate]
            name = f"{table}/{backbone or '-'}/{method}/{metric}/{aggregate}"
            checks.append(AggregateCheck(name, published, decimals, tuple(printed)))
    return checks


ALL = load_published()
CHECKS = aggregate_checks(ALL)
CONSISTENT = [check for check in CHECKS if check.name not in PAPER_INCONSISTENCIES]
INCONSISTENT = [check for check in CHECKS if check.name in PAPER_INCONSISTENCIES]


@pytest.mark.parametrize("check", CONSISTENT, ids=[check.name for check in CONSISTENT])
def test_published_mean_matches_its_members(check: AggregateCheck) -> None:
    difference = check.recomputed - check.published
    assert abs(difference) <= check.tolerance + 1e-9, (
        f"{check.name}: printed {check.published}, members average {check.recomputed:.4f} "
        f"(off by {difference:+.3f}, rounding allows {check.tolerance:.3f})"
    )


@pytest.mark.parametrize("check", INCONSISTENT, ids=[check.name for check in INCONSISTENT])
def test_paper_inconsistency_is_as_documented(check: AggregateCheck) -> None:
    assert check.recomputed == pytest.approx(PAPER_INCONSISTENCIES[check.name], abs=1e-6)
    assert abs(check.recomputed - check.published) > check.tolerance


def test_every_documented_inconsistency_is_checked() -> None:
    assert set(PAPER_INCONSISTENCIES) <= {check.name for check in CHECKS}


def test_checks_cover_every_table_with_means() -> None:
    counts = pd.Series([check.name.split("/")[0] for check in CHECKS]).value_counts().to_dict()
    assert counts == EXPECTED_CHECKS


def test_aggregate_check_catches_a_single_wrong_class() -> None:
    frame = load_published("reb_table2")
    wrong = (
        (frame.backbone == "resnet18")
        & (frame.method == "REB (variable K)")
        & (frame.category == "pill")
        & (frame.metric == "image_auroc")
    )
    assert wrong.sum() == 1
    frame.loc[wrong, "value"] = 93.9  # printed as 99.3
    bad = [check for check in aggregate_checks(frame) if check.name.startswith("reb_table2/resnet18/REB (v")]
    failing = {check.name for check in bad if abs(check.recomputed - check.published) > check.tolerance}
    assert failing == {
        "reb_table2/resnet18/REB (variable K)/image_auroc/mean_object",
        "reb_table2/resnet18/REB (variable K)/image_auroc/mean",
    }


def test_expected_tables_are_present() -> None:
    assert set(published_tables()) == EXPECTED_TABLES


@pytest.mark.parametrize("table", sorted(EXPECTED_TABLES))
def test_table_schema(table: str) -> None:
    frame = load_published(table)
    assert list(frame.columns) == [*COLUMNS, "decimals"]
    assert len(frame) > 0
    assert set(frame.table) == {table}
    assert set(frame.metric) <= {"image_auroc", "pixel_auroc", "pro"}
    assert set(frame.backbone) <= {"", "resnet18", "wide_resnet50_2", "wide_resnet101_2"}
    for dataset, rows in frame.groupby("dataset"):
        assert set(rows.category) <= CATEGORIES[dataset], dataset
    values = frame.value.dropna()
    assert ((values > 0) & (values <= 100)).all()
    keys = [*ROW_KEYS, "category"]
    assert not frame.duplicated(keys).any()


# Numbers the papers also state in their prose; each must match the transcribed table cell.
QUOTED_IN_TEXT = [
    ("reb_table2", "resnet18", "DefectMaker", "image_auroc", "mean", 98.7),
    ("reb_table2", "resnet18", "LDKNN (K=5)", "image_auroc", "mean", 99.1),
    ("reb_table2", "resnet18", "REB (K=5)", "image_auroc", "mean", 99.3),
    ("reb_table2", "resnet18", "REB (variable K)", "image_auroc", "mean", 99.5),
    ("reb_table2", "resnet18", "SimpleNet", "image_auroc", "mean", 98.3),
    ("reb_table2", "resnet18", "RD++", "image_auroc", "mean", 98.6),
    ("reb_table2", "resnet18", "DeSTSeg", "image_auroc", "mean", 98.6),
    ("reb_table2", "wide_resnet50_2", "SimpleNet", "image_auroc", "mean", 99.6),
    ("reb_table2", "wide_resnet50_2", "ReConPatch", "image_auroc", "mean", 99.6),
    ("reb_table3", "", "GCAD", "image_auroc", "mean", 83.3),
    ("reb_table3", "resnet18", "DefectMaker", "image_auroc", "mean", 77.5),
    ("reb_table3", "resnet18", "DefectMaker", "image_auroc", "mean_structural", 83.9),
    ("reb_table3", "resnet18", "DefectMaker", "image_auroc", "mean_logical", 71.1),
    ("reb_table3", "resnet18", "LDKNN (K=45)", "image_auroc", "mean", 85.4),
    ("reb_table3", "resnet18", "LDKNN (variable K)", "image_auroc", "mean", 86.1),
    ("reb_table3", "wide_resnet50_2", "LDKNN (variable K)", "image_auroc", "mean", 88.1),
    ("reb_table3", "wide_resnet101_2", "LDKNN (variable K)", "image_auroc", "mean", 88.8),
    ("reb_table4", "wide_resnet50_2", "REB (K=57)", "image_auroc", "mean", 96.0),
    ("reb_table4", "wide_resnet50_2", "REB (K=57)", "pixel_auroc", "mean", 97.2),
    # PatchCore main-text Table 5 gives (image, pixel, PRO) for the 10 % and 1 % coresets.
    ("patchcore_table_s1", "wide_resnet50_2", "PatchCore-10%", "image_auroc", "mean", 99.0),
    ("patchcore_table_s2", "wide_resnet50_2", "PatchCore-10%", "pixel_auroc", "mean", 98.1),
    ("patchcore_table_s3", "wide_resnet50_2", "PatchCore-10%", "pro", "mean", 93.5),
    ("patchcore_table_s1", "wide_resnet50_2", "PatchCore-1%", "image_auroc", "mean", 99.0),
    ("patchcore_table_s2", "wide_resnet50_2", "PatchCore-1%", "pixel_auroc", "mean", 98.0),
    ("patchcore_table_s3", "wide_resnet50_2", "PatchCore-1%", "pro", "mean", 93.1),
    ("patchcore_table_s4", "wide_resnet101_2", "PatchCore (layers 2+3, 280 px)", "image_auroc", "mean", 99.4),
    ("patchcore_table_s4", "wide_resnet101_2", "PatchCore (layers 1+2+3, 280 px)", "pro", "mean", 95.0),
    ("pdae_headline", "", "PDAE", "image_auroc", "mean", 99.7),
    ("pdae_headline", "", "PDAE", "pixel_auroc", "mean", 98.49),
]


@pytest.mark.parametrize(("table", "backbone", "method", "metric", "category", "expected"), QUOTED_IN_TEXT)
def test_values_quoted_in_the_text(
    table: str, backbone: str, method: str, metric: str, category: str, expected: float
) -> None:
    frame = load_published(table)
    cell = frame[
        (frame.backbone == backbone)
        & (frame.method == method)
        & (frame.metric == metric)
        & (frame.category == category)
    ]
    assert cell.value.tolist() == [expected]


def test_load_published_rejects_unknown_table() -> None:
    with pytest.raises(ValueError, match="table must be one of"):
        load_published("table2")


def test_load_all_is_every_table() -> None:
    assert len(ALL) == sum(len(load_published(table)) for table in published_tables())
    assert ALL.value.isna().any()
    assert ALL.loc[ALL.value.isna(), "decimals"].isna().all()
