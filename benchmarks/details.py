"""Metrics beyond image/pixel AUROC: AUROC per anomaly type (MVTec LOCO) and PRO (PatchCore S3).

MVTec LOCO's test folders are ``good``, ``structural_anomalies`` and ``logical_anomalies``;
anomalib's ``MVTecLOCO`` keeps the folder name in its samples' ``label`` column (the batch only
carries ``gt_label`` 0/1), so each test image's type is looked up by its path. REB Table 3's
"structural" ("logical") AUROC is the image AUROC of the good test images against that type
only. PRO is anomalib's ``AUPRO`` (false-positive rate integrated up to 30 %, normalised), on
the models' raw anomaly maps.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace

import torch
from anomalib.metrics import AUPRO

from .metrics import ScoreCollector, auroc

NORMAL_FOLDERS = ("good", "ok")


def auroc_by_type(
    scores: torch.Tensor, types: list[str], anomaly_types: Mapping[str, str]
) -> tuple[dict[str, float], list[str]]:
    """AUROC of the normal images against each anomaly type alone.

    ``types``: each image's test folder; ``anomaly_types``: row name → folder, e.g.
    ``{"structural": "structural_anomalies"}``. Returns ``{"<name>_image_auroc": value}`` for the
    types present, and the names of those absent from the test set (not applicable).

    Example:
        >>> scores = torch.tensor([0.1, 0.2, 0.9, 0.15, 0.8])
        >>> types = ["good", "good", "structural_anomalies", "logical_anomalies", "logical_anomalies"]
        >>> folders = {"structural": "structural_anomalies", "logical": "logical_anomalies"}
        >>> auroc_by_type(scores, types, folders)
        ({'structural_image_auroc': 100.0, 'logical_image_auroc': 75.0}, [])
    """
    normal = torch.tensor([t in NORMAL_FOLDERS for t in types])
    result, absent = {}, []
    for name, folder in anomaly_types.items():
        members = torch.tensor([t == folder for t in types])
        if not members.any():
            absent.append(name)
            continue
        keep = normal | members
        result[f"{name}_image_auroc"] = auroc(scores[keep], members[keep].long())
    return result, absent


def aupro(maps: torch.Tensor, masks: torch.Tensor, fpr_limit: float = 0.3) -> float:
    """Anomalib's AUPRO of ``(N, H, W)`` anomaly maps against binary masks, in percent."""
    metric = AUPRO(fields=["anomaly_map", "gt_mask"], fpr_limit=fpr_limit)
    metric.update(SimpleNamespace(anomaly_map=maps.float(), gt_mask=masks.int()))
    return 100 * float(metric.compute())


class DetailCollector(ScoreCollector):
    """:class:`ScoreCollector` that also keeps image paths and 2-D maps for the extra metrics.

    Args:
        anomaly_types: row name → test folder; adds ``<name>_image_auroc`` per type present.
        pro: add ``pro`` (needs anomaly maps and masks).
    """

    def __init__(self, anomaly_types: Mapping[str, str] | None = None, pro: bool = False) -> None:
        self.anomaly_types = dict(anomaly_types or {})
        self.pro = pro
        self.folder_of: dict[str, str] = {}
        super().__init__()

    def reset(self) -> None:
        """Forget the previous test run."""
        super().reset()
        self.paths: list[str] = []
        self.maps_2d: list[torch.Tensor] = []
        self.masks_2d: list[torch.Tensor] = []

    def on_test_start(self, trainer, pl_module) -> None:
        """Read each test image's folder from the datamodule's samples."""
        del pl_module
        samples = trainer.datamodule.test_data.samples
        paths, folders = samples["image_path"].astype(str), samples["label"].astype(str)
        self.folder_of = dict(zip(paths, folders, strict=True))

    def on_test_batch_end(self, trainer, pl_module, outputs, *args, **kwargs) -> None:
        """Store what :class:`ScoreCollector` stores, plus paths and (for PRO) 2-D maps."""
        super().on_test_batch_end(trainer, pl_module, outputs, *args, **kwargs)
        self.paths += [str(path) for path in outputs.image_path]
        if self.pro and outputs.anomaly_map is not None and outputs.gt_mask is not None:
            size = outputs.anomaly_map.shape[-2:]
            self.maps_2d.append(outputs.anomaly_map.detach().cpu().reshape(-1, *size))
            self.masks_2d.append(outputs.gt_mask.detach().cpu().reshape(-1, *size))

    def metrics(self) -> dict[str, float]:
        """Image/pixel AUROC, then the per-type AUROCs and PRO that were asked for and apply."""
        result = super().metrics()
        if self.anomaly_types:
            types = [self.folder_of[path] for path in self.paths]
            per_type, _ = auroc_by_type(torch.cat(self.scores), types, self.anomaly_types)
            result |= per_type
        if self.pro and self.maps_2d:
            result["pro"] = aupro(torch.cat(self.maps_2d), torch.cat(self.masks_2d))
        return result

    def details(self) -> dict:
        """For the run log: the test folders seen and the anomaly types that did not apply."""
        if not self.anomaly_types:
            return {}
        types = [self.folder_of[path] for path in self.paths]
        _, absent = auroc_by_type(torch.cat(self.scores), types, self.anomaly_types)
        counts = {folder: types.count(folder) for folder in sorted(set(types))}
        return {"test_folders": counts, "not_applicable": absent}
