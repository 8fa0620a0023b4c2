"""The papers' constants: datasets, categories, backbones and their weights, K (reasons: README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Beside the repository: the datasets (``data/``) and local weights files (``weights/``).
SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS_FILES = {
    "mobilenetv2_100": "mobilenetv2_100.tv_in1k.safetensors",
    "tf_efficientnet_lite0": "tf_efficientnet_lite0.in1k.safetensors",
}

CATEGORIES = {
    "mvtec_ad": (
        "carpet", "grid", "leather", "tile", "wood",
        "bottle", "cable", "capsule", "hazelnut", "metal_nut",
        "pill", "screw", "toothbrush", "transistor", "zipper",
    ),
    "mvtec_loco": ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors"),
    "btad": ("01", "02", "03"),
}  # fmt: skip
# Per dataset: anomalib's datamodule and the folder under --data-root.
DATAMODULES = {"mvtec_ad": "MVTecAD", "mvtec_loco": "MVTecLOCO", "btad": "BTech"}
FOLDERS = {"mvtec_ad": "MVTecAD", "mvtec_loco": "MVTec_LOCO", "btad": "BTech"}
# The smoke mode's stand-in: one MVTec-layout category beside the datasets.
SMOKE_DATASET = "kolektorsdd"
# Per backbone: the timm weights tag the papers used (torchvision's ImageNet V1 weights), REB's
# layers, fixed K (Table 2), LDKNN's embedding size D and GDE's last layer (Table 5).
RESNET = {"layers": ["layer2", "layer3"], "last": "layer4"}
BACKBONES = {
    "resnet18": {"weights": "resnet18.tv_in1k", **RESNET, "k": 5, "dim": 512},
    "wide_resnet50_2": {"weights": "wide_resnet50_2.tv_in1k", **RESNET, "k": 9, "dim": 1024},
    "wide_resnet101_2": {"weights": "wide_resnet101_2.tv_in1k", **RESNET, "k": 9, "dim": 1024},
    # The smoke mode's network: timm has no tv_in1k tag for it; its weights come from a file.
    "mobilenetv2_100": {"weights": "mobilenetv2_100", "layers": ["blocks.2", "blocks.4"], "last": "blocks.6"},
}
BACKBONES["mobilenetv2_100"] |= {"k": 5, "dim": 512}
# Table 6's scorers as the published CSV labels them; LOF and LDOF as REB's code computes them.
SCORERS = {"knn": "KNN", "kth_nn": "Kth-NN", "lof_reb": "LOF", "ldof_reb": "LDOF", "ldknn": "LDKNN"}
# REB §4.2: one K per dataset for every class and backbone (Tables 3 and 4).
LOCO_K = 45
BTAD_K = 57
DATASET_K = {"mvtec_loco": LOCO_K, "btad": BTAD_K}
# REB's "variable K" candidates per dataset, from the authors' code (none for BTAD).
K_CANDIDATES = {"mvtec_ad": (3, 5, 7, 9, 11), "mvtec_loco": (39, 45, 51, 57), SMOKE_DATASET: (3, 5, 7, 9, 11)}
VARIABLE_K = "variable"
# MVTec LOCO's anomaly types (REB Table 3's "structural" and "logical" columns): test folders.
LOCO_TYPES = {"structural": "structural_anomalies", "logical": "logical_anomalies"}
# REB's DefectMaker fine-tuning: the paper's schedule; the smoke mode's, sized for CI.
FINETUNE = {
    "num_updates": 300, "images_per_update": 1000, "freeze_updates": 40, "restart_period": 330,
    "batch_size": 48,
}  # fmt: skip
SMOKE_FINETUNE = {
    "num_updates": 3, "images_per_update": 28, "freeze_updates": 1, "restart_period": 4, "batch_size": 4,
    "image_size": 64,
}  # fmt: skip
# REB Table 5's fine-tuned representations: our label and Reb's ``defects``.
TABLE5_DEFECTS = {
    "DefectMaker (config 3)": "defectmaker",
    "DefectMaker (CutPaste fill only)": "defectmaker_cutpaste",
    "DefectMaker (noise fill only)": "defectmaker_noise",
    "CutPaste": "cutpaste",
    "DRAEM": "draem",
}
TABLE5_SMOKE_DEFECTS = ("cutpaste", "draem")


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
    # PatchCore Tables S1-S3: the paper's coreset sizes 25 %, 10 %, 1 %.
    patchcore_s_ratios: tuple[float, ...] = (0.25, 0.1, 0.01)
    # REB Table 5's DRAEM representation: folder of texture images (DTD).
    textures: str | None = None


def fixed_k(dataset: str, backbone: str) -> int:
    """The table's fixed K: one per dataset on MVTec LOCO and BTAD, one per backbone elsewhere."""
    return DATASET_K.get(dataset, BACKBONES[backbone]["k"])
