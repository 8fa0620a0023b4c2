"""Greedy k-center coreset (PatchCore §3.2), many centers per pass over the bank."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .embedding_store import EmbeddingStore
from .search import squared_norms

# Rows of the bank updated at once: bounds the (rows × new centers) distance block (16 MB at 256
# centers), which sits on top of the whole bank and its projection.
ROW_CHUNK = 16384


def greedy_coreset(
    embeddings: torch.Tensor | np.ndarray | EmbeddingStore,
    ratio: float,
    projection_dim: int = 128,
    seed: int = 0,
    candidates: int = 256,
    progress: bool = True,
) -> np.ndarray:
    """Indices of a greedy k-center coreset holding ``ratio`` of the rows.

    The textbook greedy (start at a random row, repeatedly add the row farthest from the chosen
    set, on a random bias-free projection to ``projection_dim`` dimensions) costs one pass over
    the whole bank per center, which is memory-bound and slow. Here each pass serves many
    centers: the ``candidates`` farthest rows are taken, the greedy runs among them exactly, and
    it stops as soon as the best candidate is no farther than the farthest row left outside,
    whose distance can only have shrunk. Up to that point every pick is the one the textbook
    greedy makes. One matrix product then updates the whole bank with all centers found.
    Only the projection is held in memory: an :class:`EmbeddingStore` is projected block by block.

    Example:
        >>> points = np.random.default_rng(0).normal(size=(1000, 16)).astype(np.float32)
        >>> greedy_coreset(points, ratio=0.1, progress=False).shape
        (100,)
    """
    if not 0 < ratio <= 1:
        msg = f"coreset ratio must be in (0, 1], got {ratio}."
        raise ValueError(msg)
    count = len(embeddings)
    n_select = max(1, round(count * ratio))
    if n_select >= count:
        return np.arange(count)
    generator = torch.Generator().manual_seed(seed)
    points = _project(embeddings, projection_dim, generator)
    norms = squared_norms(points)
    first = int(torch.randint(count, (1,), generator=generator))
    selected = [first]
    closest = _squared_to(points, norms, points[first : first + 1], norms[first : first + 1]).squeeze(1)
    bar = tqdm(total=n_select, desc="coreset", disable=not progress, leave=False, mininterval=1)
    bar.update(1)
    while len(selected) < n_select:
        picks = _picks_among_farthest(points, closest, min(candidates, count), n_select - len(selected))
        selected.extend(picks)
        bar.update(len(picks))
        centers = points[picks]
        center_norms = norms[picks]
        for start in range(0, count, ROW_CHUNK):
            rows = slice(start, start + ROW_CHUNK)
            # min over centers of |c|² − 2 p·c, plus |p|²: one fused block, no N×centers copies
            nearest = torch.addmm(center_norms, points[rows], centers.T, alpha=-2).amin(1)
            torch.minimum(closest[rows], nearest.add_(norms[rows]).clamp_min_(0), out=closest[rows])
    bar.close()
    return np.asarray(selected, dtype=np.int64)


def _picks_among_farthest(
    points: torch.Tensor, closest: torch.Tensor, candidates: int, budget: int
) -> list[int]:
    """Greedy steps that are provably the textbook's, using only the farthest rows."""
    values, rows = closest.topk(candidates)
    threshold = values[-1]  # every other row is at most this far from the chosen set
    local = points[rows]
    local_norms = squared_norms(local)
    picks: list[int] = []
    while len(picks) < budget:
        best = int(values.argmax())
        if picks and values[best] < threshold:
            break
        picks.append(int(rows[best]))
        step = _squared_to(local, local_norms, local[best : best + 1], local_norms[best : best + 1]).squeeze(
            1
        )
        values = torch.minimum(values, step)
        values[best] = -1  # chosen: never again
    return picks


def _project(
    rows: torch.Tensor | np.ndarray | EmbeddingStore, dim: int, generator: torch.Generator
) -> torch.Tensor:
    """Float32 rows randomly projected to ``dim`` columns (Johnson–Lindenstrauss), if it shrinks."""
    if isinstance(rows, EmbeddingStore):
        width, blocks = rows.row_shape[0], rows.blocks()
    else:
        data = torch.as_tensor(rows).detach().cpu()
        width, blocks = data.shape[1], [data]
    matrix = torch.randn(width, dim, generator=generator) / dim**0.5 if width > dim else None
    points = torch.empty(len(rows), min(width, dim))
    start = 0
    for block in blocks:
        end = start + len(block)
        if matrix is None:
            points[start:end] = block
        else:
            torch.matmul(block.float(), matrix, out=points[start:end])
        start = end
    return points


def _squared_to(
    points: torch.Tensor, norms: torch.Tensor, centers: torch.Tensor, center_norms: torch.Tensor
) -> torch.Tensor:
    """Squared distances ``(rows, centers)``."""
    return (norms[:, None] - 2 * points @ centers.T + center_norms[None, :]).clamp_min_(0)
