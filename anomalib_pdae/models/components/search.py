"""Nearest-neighbour search: export-safe torch inside ``forward``, faiss at fit time."""

from __future__ import annotations

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

# Bank rows compared at once inside forward: bounds the (queries × rows) block, the only large
# temporary (a batch of 32 images at 32×32 patches: 268 MB).
BANK_CHUNK = 2048


def squared_distances(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances ``(N, M)`` by one matmul (exports to ONNX, unlike ``torch.cdist``)."""
    products = queries @ bank.T
    return (queries.pow(2).sum(1, keepdim=True) - 2 * products + bank.pow(2).sum(1)).clamp_min(0)


def squared_norms(rows: torch.Tensor) -> torch.Tensor:
    """``|row|²`` of every row, without a squared copy of ``rows``."""
    return torch.linalg.vector_norm(rows, dim=1).square()


def nearest_neighbours(
    queries: torch.Tensor, bank: torch.Tensor, k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest bank rows of every query: squared distances and indices, ascending.

    The bank is walked in chunks of :data:`BANK_CHUNK` rows; the loop's trip count depends on
    the bank size only, never on the batch, so exported models keep a dynamic batch. Within a
    chunk the ranking uses ``|b|² − 2 q·b``, one fused multiply-add into a single block; the
    query's own ``|q|²`` is added to the ``k`` winners only.

    Example:
        >>> bank = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
        >>> nearest_neighbours(torch.tensor([[3.0, 3.0]]), bank, k=1)
        (tensor([[1.]]), tensor([[1]]))
    """
    best_distances, best_indices = None, None
    bank_norms = squared_norms(bank)
    for start in range(0, bank.shape[0], BANK_CHUNK):
        rows = slice(start, start + BANK_CHUNK)
        partial = torch.addmm(bank_norms[rows], queries, bank[rows].T, alpha=-2)
        chunk_k = min(k, partial.shape[1])
        distances, indices = partial.topk(chunk_k, dim=1, largest=False)
        indices = indices + start
        if best_distances is not None:
            distances = torch.cat([best_distances, distances], dim=1)
            indices = torch.cat([best_indices, indices], dim=1)
            chunk_k = min(k, distances.shape[1])
            distances, order = distances.topk(chunk_k, dim=1, largest=False)
            indices = indices.gather(1, order)
        best_distances, best_indices = distances, indices
    return (best_distances + squared_norms(queries)[:, None]).clamp_min(0), best_indices


def faiss_knn(
    queries: np.ndarray | torch.Tensor,
    bank: np.ndarray | torch.Tensor,
    k: int,
    exclude_self: bool = False,
    chunk: int = 8192,
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by faiss brute force (squared L2 distances), for fitting.

    With ``exclude_self`` the queries are bank points: one extra neighbour is searched and the
    first, the point itself at distance 0, is dropped. (The REB reference drops the first only
    when faiss reports exactly 0 and the last otherwise; float32 rounding gives many points a
    tiny positive distance to themselves, 43% of a KolektorSDD bank, and the reference then keeps
    the point as its own neighbour. If rounding ranks an exact duplicate first, the two are
    interchangeable.) ``progress`` names a progress bar over query chunks.

    Example:
        >>> bank = np.array([[0.0], [1.0], [3.0]], dtype=np.float32)
        >>> faiss_knn(bank, bank, k=1, exclude_self=True)[0].ravel().tolist()
        [1.0, 1.0, 4.0]
    """
    queries, bank = _as_float32(queries), _as_float32(bank)
    starts = range(0, len(queries), chunk)
    # faiss.knn searches the bank in place; an index would keep a second copy of it.
    results = [
        faiss.knn(queries[start : start + chunk], bank, k + 1 if exclude_self else k)
        for start in tqdm(starts, desc=progress, disable=progress is None, leave=False)
    ]
    distances = np.concatenate([r[0] for r in results]).clip(min=0)
    indices = np.concatenate([r[1] for r in results])
    if not exclude_self:
        return distances, indices
    return distances[:, 1:], indices[:, 1:]


def _as_float32(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.ascontiguousarray(array, dtype=np.float32)
