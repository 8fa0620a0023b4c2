"""Exact AUROC from raw scores, and a callback collecting a test run's scores.

anomalib's AUROC (torchmetrics) passes scores outside [0, 1] through a sigmoid, which saturates
for raw distance scores (every image scores 1.0, AUROC 0.5) unless a post-processor first
normalises them with statistics from a validation split. The benchmarks report threshold-free
AUROC on raw scores instead, so nothing is calibrated and no split is needed for it.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback


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


class ScoreCollector(Callback):
    """Keeps every test batch's image scores, labels, anomaly maps and masks (on the CPU)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the previous test run."""
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.maps: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []

    def on_test_batch_end(self, trainer, pl_module, outputs, *args, **kwargs) -> None:
        """Store the batch's predictions and ground truth."""
        del trainer, pl_module, args, kwargs
        self.scores.append(outputs.pred_score.detach().cpu().reshape(-1))
        self.labels.append(outputs.gt_label.detach().cpu().reshape(-1))
        if outputs.anomaly_map is not None and outputs.gt_mask is not None:
            self.maps.append(outputs.anomaly_map.detach().cpu().reshape(-1))
            self.masks.append(outputs.gt_mask.detach().cpu().reshape(-1))

    def metrics(self) -> dict[str, float]:
        """Image AUROC and (when masks were given) pixel AUROC of the collected run."""
        result = {"image_auroc": auroc(torch.cat(self.scores), torch.cat(self.labels))}
        if self.maps:
            result["pixel_auroc"] = auroc(torch.cat(self.maps), torch.cat(self.masks))
        return result
