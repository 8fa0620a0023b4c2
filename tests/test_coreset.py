"""Greedy coreset: the same picks as the textbook farthest-first traversal."""

import numpy as np
import pytest
import torch

from anomalib_pdae.models.components import coreset
from anomalib_pdae.models.components.coreset import greedy_coreset


def textbook_greedy(data: np.ndarray, ratio: float, seed: int = 0) -> np.ndarray:
    """One full pass over the bank per center (PatchCore §3.2, Algorithm 1)."""
    generator = torch.Generator().manual_seed(seed)
    points = coreset._project(torch.as_tensor(data).float(), 128, generator)
    count = len(points)
    chosen = [int(torch.randint(count, (1,), generator=generator))]
    norms = points.pow(2).sum(1)

    def distances(index: int) -> torch.Tensor:
        return coreset._squared_to(points, norms, points[index : index + 1], norms[index : index + 1])[:, 0]

    closest = distances(chosen[0])
    while len(chosen) < max(1, round(count * ratio)):
        chosen.append(int(closest.argmax()))
        closest = torch.minimum(closest, distances(chosen[-1]))
    return np.array(chosen)


@pytest.mark.parametrize(
    ("kind", "ratio", "candidates"),
    [("gaussian", 0.1, 256), ("clustered", 0.1, 256), ("clustered", 0.3, 16), ("gaussian", 0.05, 2)],
)
def test_same_picks_as_textbook_greedy(kind, ratio, candidates):
    rng = np.random.default_rng(3)
    if kind == "gaussian":
        data = rng.normal(size=(2000, 200))
    else:  # 40 tight clusters, as patch features of one product tend to be
        data = rng.normal(size=(40, 200)).repeat(50, 0) * 3 + rng.normal(size=(2000, 200)) * 0.3
    data = data.astype(np.float32)
    expected = textbook_greedy(data, ratio)
    got = greedy_coreset(data, ratio, candidates=candidates, progress=False)
    # Float rounding differs between one matrix product per center and one per batch, so two
    # nearly equidistant rows may be taken in the other order; the set is the same.
    assert set(got.tolist()) == set(expected.tolist())
    assert np.mean(got == expected) > 0.95


def test_picks_are_distinct_and_in_range():
    data = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    picks = greedy_coreset(data, 0.5, progress=False)
    assert len(set(picks.tolist())) == len(picks) == 250
    assert picks.min() >= 0 and picks.max() < 500


def test_full_ratio_keeps_everything():
    np.testing.assert_array_equal(greedy_coreset(np.zeros((7, 3)), 1.0, progress=False), np.arange(7))


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5])
def test_invalid_ratio(ratio):
    with pytest.raises(ValueError, match="coreset ratio"):
        greedy_coreset(np.zeros((7, 3)), ratio)
