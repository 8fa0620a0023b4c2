"""The benchmarks' rank-sum AUROC equals anomalib's AUROC, ties included."""

import pytest
import torch
from anomalib.metrics import AUROC

from benchmarks.metrics import auroc


@pytest.mark.parametrize("levels", [5, 1000])  # many ties, few ties
def test_rank_sum_auroc_equals_anomalib_auroc(levels):
    generator = torch.Generator().manual_seed(levels)
    labels = (torch.rand(4000, generator=generator) < 0.1).int()
    scores = torch.randint(levels, (4000,), generator=generator).float() + labels * 0.7 * levels / 5
    scores = scores / scores.max()  # torchmetrics applies a sigmoid to scores outside [0, 1]
    metric = AUROC(fields=["pred_score", "gt_label"])
    metric.update(type("Batch", (), {"pred_score": scores, "gt_label": labels})())
    assert auroc(scores, labels) / 100 == pytest.approx(float(metric.compute()), abs=1e-6)
    assert 50 < auroc(scores, labels) < 100  # neither trivial nor perfect
