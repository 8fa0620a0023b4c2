"""Greedy k-center coreset (PatchCore §3.2) that prunes with the triangle inequality."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm


def greedy_coreset(
    embeddings: torch.Tensor | np.ndarray,
    ratio: float,
    projection_dim: int = 128,
    seed: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Indices of a greedy k-center coreset holding ``ratio`` of the rows.

    Same selection as the textbook greedy (repeatedly add the row farthest from the chosen set,
    on a random bias-free projection to ``projection_dim`` dimensions, starting from a random
    row), computed faster: every row remembers its closest center, every center the largest
    distance among its rows, and a new center only re-examines the rows of centers that lie
    within twice that radius of it — the triangle inequality says no other row can move. Late
    steps touch a small neighbourhood instead of the whole bank. Memory: the projected bank plus
    a few per-row vectors.

    Example:
        >>> points = np.random.default_rng(0).normal(size=(1000, 16)).astype(np.float32)
        >>> greedy_coreset(points, ratio=0.1, progress=False).shape
        (100,)
    """
    if not 0 < ratio <= 1:
        msg = f"coreset ratio must be in (0, 1], got {ratio}."
        raise ValueError(msg)
    data = (
        embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) else np.asarray(embeddings)
    )
    count = data.shape[0]
    n_select = max(1, round(count * ratio))
    if n_select >= count:
        return np.arange(count)
    rng = np.random.default_rng(seed)
    points = _project(data.astype(np.float32, copy=False), projection_dim, rng)
    norms = np.einsum("ij,ij->i", points, points)

    selected = np.empty(n_select, dtype=np.int64)
    centers = np.empty((n_select, points.shape[1]), dtype=np.float32)
    radius = np.zeros(n_select, dtype=np.float32)  # largest squared distance in each cluster
    selected[0] = rng.integers(count)
    centers[0] = points[selected[0]]
    closest = _squared_to(points, norms, centers[0])
    owner = np.zeros(count, dtype=np.int64)
    radius[0] = closest.max()

    for step in tqdm(range(1, n_select), desc="coreset", disable=not progress, leave=False, mininterval=1):
        new = int(np.argmax(closest))
        selected[step], centers[step] = new, points[new]
        gaps = ((centers[:step] - centers[step]) ** 2).sum(1)
        near = np.zeros(step + 1, dtype=bool)
        near[:step] = gaps < 4 * radius[:step]  # d(c, c_j) < 2·sqrt(r_j): c may capture rows of j
        rows = np.flatnonzero(near[owner])
        distances = _squared_to(points[rows], norms[rows], centers[step])
        moved = distances < closest[rows]
        closest[rows[moved]] = distances[moved]
        owner[rows[moved]] = step
        radius[: step + 1][near] = 0
        radius[step] = 0
        np.maximum.at(radius, owner[rows], closest[rows])
    return selected


def _project(data: np.ndarray, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Random Gaussian projection to ``dim`` columns (Johnson–Lindenstrauss), if it shrinks."""
    if data.shape[1] <= dim:
        return np.ascontiguousarray(data)
    matrix = rng.normal(0.0, 1.0 / np.sqrt(dim), size=(data.shape[1], dim)).astype(np.float32)
    return data @ matrix


def _squared_to(points: np.ndarray, norms: np.ndarray, center: np.ndarray) -> np.ndarray:
    return np.maximum(norms - 2 * (points @ center) + center @ center, 0)
