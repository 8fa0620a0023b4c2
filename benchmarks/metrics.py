"""Exact AUROC on raw scores, AUROC per anomaly type, PRO, and the callback collecting a test run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import SimpleNamespace

import numpy as np
import torch
from anomalib.data import AnomalibDataModule
from anomalib.metrics import AUPRO
from lightning.pytorch import Callback
from torch.nn.functional import interpolate

NORMAL_FOLDERS = ("good", "ok")


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve, exact (Mann-Whitney U with average ranks for ties), in percent.

    Example:
        >>> auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1]))
        75.0
    """
    scores = scores.reshape(-1).double()
    labels = labels.reshape(-1).bool()
    positives = int(labels.sum())
    negatives = labels.numel() - positives
    if positives == 0 or negatives == 0:
        msg = f"AUROC needs both classes; got {positives} positives and {negatives} negatives"
        raise ValueError(msg)
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    average_ranks = ends - (counts.double() - 1) / 2
    rank_sum = average_ranks[inverse][labels].sum().item()
    return 100 * (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def auroc_by_type(
    scores: torch.Tensor, types: list[str], anomaly_types: Mapping[str, str]
) -> tuple[dict[str, float], list[str]]:
    """AUROC of the normal images against each anomaly type alone, and the types absent.

    ``types``: each image's test folder; ``anomaly_types``: row name → folder.

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


class ScoreCollector(Callback):
    """Keeps a test run's image scores, labels, paths, anomaly maps and masks (on the CPU).

    Args:
        anomaly_types: row name → test folder; adds ``<name>_image_auroc`` per type present.
        pro: add ``pro`` (needs anomaly maps and masks).
    """

    def __init__(self, anomaly_types: Mapping[str, str] | None = None, pro: bool = False) -> None:
        self.anomaly_types = dict(anomaly_types or {})
        self.pro = pro
        self.folder_of: dict[str, str] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the previous test run."""
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.paths: list[str] = []
        self.maps: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []

    def on_test_start(self, trainer, pl_module) -> None:
        """Read each test image's folder from the datamodule's samples."""
        samples = trainer.datamodule.test_data.samples
        self.folder_of = dict(
            zip(samples["image_path"].astype(str), samples["label"].astype(str), strict=True)
        )

    def on_test_batch_end(self, trainer, pl_module, outputs, *args, **kwargs) -> None:
        """Store the batch's predictions and ground truth."""
        self.scores.append(outputs.pred_score.detach().cpu().reshape(-1))
        self.labels.append(outputs.gt_label.detach().cpu().reshape(-1))
        self.paths += [str(path) for path in outputs.image_path]
        if outputs.anomaly_map is not None and outputs.gt_mask is not None:
            size = outputs.anomaly_map.shape[-2:]
            self.maps.append(outputs.anomaly_map.detach().cpu().reshape(-1, *size))
            self.masks.append(outputs.gt_mask.detach().cpu().reshape(-1, *size))

    def _by_type(self) -> tuple[dict[str, float], list[str], list[str]]:
        types = [self.folder_of[path] for path in self.paths]
        return (*auroc_by_type(torch.cat(self.scores), types, self.anomaly_types), types)

    def metrics(self) -> dict[str, float]:
        """Image and (with masks) pixel AUROC, then the per-type AUROCs and PRO asked for."""
        result = {"image_auroc": auroc(torch.cat(self.scores), torch.cat(self.labels))}
        if self.maps:
            result["pixel_auroc"] = auroc(torch.cat(self.maps), torch.cat(self.masks))
        if self.anomaly_types:
            result |= self._by_type()[0]
        if self.pro and self.maps:
            result["pro"] = aupro(torch.cat(self.maps), torch.cat(self.masks))
        return result

    def details(self) -> dict:
        """For the run log: the test folders seen and the anomaly types that did not apply."""
        if not self.anomaly_types:
            return {}
        _, absent, types = self._by_type()
        counts = {folder: types.count(folder) for folder in sorted(set(types))}
        return {"test_folders": counts, "not_applicable": absent}


def aurocs(run: Callable[[np.ndarray], tuple], datamodule: AnomalibDataModule) -> dict:
    """Image and pixel AUROC (percent) of ``run`` (images → scores, maps) on the test split.

    Raw scores; masks resized to the map, nearest.
    """
    scores, labels, maps, masks = [], [], [], []
    for batch in datamodule.test_dataloader():
        score, anomaly_map = run(batch.image.numpy())
        anomaly_map = torch.as_tensor(anomaly_map).reshape(len(batch.image), -1, *anomaly_map.shape[-2:])
        scores.append(torch.as_tensor(score).reshape(-1))
        labels.append(batch.gt_label)
        maps.append(anomaly_map.flatten())
        mask = interpolate(batch.gt_mask[:, None].float(), size=anomaly_map.shape[-2:], mode="nearest")
        masks.append(mask.flatten())
    return {
        "image_auroc": auroc(torch.cat(scores), torch.cat(labels)),
        "pixel_auroc": auroc(torch.cat(maps), torch.cat(masks)),
    }


def torch_run(model: Callable) -> Callable[[np.ndarray], tuple]:
    """``images → (scores, maps)`` of a model's ``forward`` without gradients, for :func:`aurocs`."""

    def run(images: np.ndarray) -> tuple:
        with torch.no_grad():
            out = model(torch.from_numpy(images))
        return out.pred_score, out.anomaly_map

    return run
