"""Nearest-neighbour search: export-safe torch inside ``forward``, faiss at fit time.

``forward`` searches either exactly (:func:`nearest_neighbours`) or approximately
(:class:`NeighbourSearch` with ``mode="approximate"``): candidates by the same chunked matmul in
a PCA space learned from the bank at fit time, then an exact re-rank of the candidates in full
dimension. Both are plain matmul, top-k and gather, so they export (ONNX, OpenVINO) with a
dynamic batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np
import torch
from anomalib.models.components import DynamicBufferMixin
from torch import nn
from tqdm.auto import tqdm

from .embedding_store import EmbeddingStore

SEARCH_MODES = ("exact", "approximate")

# Bank rows compared at once inside forward: bounds the (queries × rows) block, the only large
# temporary. In torch, 2048 (anomalib's test batch of 32 images at 32×32 patches: 268 MB). In an
# exported graph, whose deployment batches are small (8 images: 134 MB), 4096: each chunk costs
# a top-k and a merge of its own, and 2048 made an OpenVINO export at a 1% KolektorSDD bank
# (2 560 rows) 11% slower, while 4096 in torch raised the KolektorSDD test's peak RSS by 0.4 GB.
BANK_CHUNK, EXPORT_BANK_CHUNK = 2048, 4096


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

    The bank is walked in chunks of :data:`BANK_CHUNK` rows (:data:`EXPORT_BANK_CHUNK` while
    exporting); the loop's trip count depends on the bank size only, never on the batch, so
    exported models keep a dynamic batch. Within a
    chunk the ranking uses ``|b|² − 2 q·b``, one fused multiply-add into a single block; the
    query's own ``|q|²`` is added to the ``k`` winners only.

    Example:
        >>> bank = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
        >>> distances, indices = nearest_neighbours(torch.tensor([[3.0, 3.0]]), bank, k=1)
        >>> round(distances.item(), 4), indices.tolist()
        (1.0, [[1]])
    """
    best_distances, best_indices = None, None
    bank_norms = squared_norms(bank)
    chunk = EXPORT_BANK_CHUNK if torch.onnx.is_in_onnx_export() else BANK_CHUNK
    for start in range(0, bank.shape[0], chunk):
        rows = slice(start, start + chunk)
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


def check_search(
    mode: str, candidates: int, projection_dim: int, features: int | None = None, k: int = 1
) -> None:
    """Refuse search settings :class:`NeighbourSearch` cannot honour, naming the argument.

    ``features``: width of the rows searched when known before fitting; ``k``: neighbours asked for.
    """
    if mode not in SEARCH_MODES:
        msg = f"search must be one of {', '.join(map(repr, SEARCH_MODES))}; got {mode!r}."
        raise ValueError(msg)
    if not isinstance(candidates, int) or candidates < 1:
        msg = f"candidates (rows re-ranked per query) must be an integer >= 1, got {candidates!r}."
        raise ValueError(msg)
    if not isinstance(projection_dim, int) or projection_dim < 1:
        msg = f"projection_dim must be an integer >= 1, got {projection_dim!r}."
        raise ValueError(msg)
    if mode == "approximate" and candidates < k:
        msg = f"candidates={candidates} must be >= k={k}: the re-rank picks the k nearest among them."
        raise ValueError(msg)
    if mode == "approximate" and features is not None:
        check_width(features, projection_dim)


def check_width(features: int, projection_dim: int) -> None:
    """Refuse a projection wider than the features it reduces."""
    if projection_dim > features:
        msg = f"projection_dim={projection_dim} is wider than the features it reduces ({features})."
        raise ValueError(msg)


class NeighbourSearch(DynamicBufferMixin, nn.Module):
    """The ``k`` nearest bank rows of queries, exact or approximate; called as ``search(queries, bank, k)``.

    Approximate: the bank is projected once at :meth:`fit` onto its ``projection_dim`` principal
    axes (buffers ``projection`` and ``projected_bank``); a query's ``candidates`` nearest
    projected rows are re-ranked by their exact full-dimension distance. Distances are exact
    for the rows returned; a true neighbour is missed only when the projection ranks it below
    ``candidates`` others.

    Args:
        mode: ``"exact"`` or ``"approximate"``.
        candidates: rows re-ranked per query (approximate only); at least ``k``.
        projection_dim: width of the reduced space (approximate only).
        features: width of the rows searched, when known before fitting (checks ``projection_dim``).
        k: neighbours the caller asks for (checks ``candidates``).

    Example:
        >>> search = NeighbourSearch("approximate", candidates=2, projection_dim=1)
        >>> bank = torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, 0.0]])
        >>> search.fit(bank)
        >>> distances, indices = search(torch.tensor([[3.0, 3.0]]), bank, k=1)
        >>> round(distances.item(), 4), indices.tolist()
        (1.0, [[1]])
    """

    def __init__(
        self,
        mode: str = "exact",
        candidates: int = 8,
        projection_dim: int = 128,
        features: int | None = None,
        k: int = 1,
    ) -> None:
        super().__init__()
        check_search(mode, candidates, projection_dim, features, k)
        self.mode = mode
        self.candidates = candidates
        self.projection_dim = projection_dim
        self.register_buffer("projection", torch.empty(0))
        self.register_buffer("projected_bank", torch.empty(0))

    def check_bank_size(self, rows: int) -> None:
        """Refuse more candidates than bank rows (approximate only)."""
        if self.mode == "approximate" and self.candidates > rows:
            msg = (
                f"candidates={self.candidates} exceeds the memory bank ({rows} rows): "
                "use fewer candidates or a larger bank."
            )
            raise ValueError(msg)

    def fit(self, bank: torch.Tensor) -> None:
        """Learn the projection (principal axes of the bank) and project the bank once."""
        if self.mode == "exact":
            return
        self.check_bank_size(len(bank))
        check_width(bank.shape[1], self.projection_dim)
        self.projection = principal_axes(bank, self.projection_dim)
        self.projected_bank = (bank @ self.projection).contiguous()

    def forward(
        self, queries: torch.Tensor, bank: torch.Tensor, k: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distances and indices ``(N, k)`` of the ``k`` nearest bank rows, ascending."""
        if self.mode == "exact":
            return nearest_neighbours(queries, bank, k=k)
        _, candidates = nearest_neighbours(queries @ self.projection, self.projected_bank, k=self.candidates)
        return reranked(queries, bank, candidates, k)


def reranked(
    queries: torch.Tensor, bank: torch.Tensor, candidates: torch.Tensor, k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest of each query's candidate rows ``(N, C)`` of ``bank``, by exact distance.

    Squared distances and bank indices ``(N, k)``, ascending; a gather and a batched matmul, so
    it exports.

    Example:
        >>> bank = torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, 0.0]])
        >>> distances, indices = reranked(torch.tensor([[3.0, 3.0]]), bank, torch.tensor([[0, 2]]))
        >>> round(distances.item(), 4), indices.tolist()
        (9.0, [[2]])
    """
    rows = bank[candidates]  # (N, C, D)
    products = torch.bmm(rows, queries.unsqueeze(2)).squeeze(2)
    distances = squared_norms(bank)[candidates] - 2 * products + squared_norms(queries)[:, None]
    distances, order = distances.topk(k, dim=1, largest=False)
    return distances.clamp_min(0), candidates.gather(1, order)


def principal_axes(rows: torch.Tensor, width: int) -> torch.Tensor:
    """The ``width`` leading principal axes ``(D, width)`` of ``rows`` (covariance in float64)."""
    centred = rows.double() - rows.double().mean(0)
    _, vectors = torch.linalg.eigh(centred.T @ centred)  # eigenvalues ascending
    return vectors[:, -width:].flip(1).to(rows.dtype).contiguous()


def faiss_knn(
    queries: np.ndarray | torch.Tensor,
    bank: np.ndarray | torch.Tensor | EmbeddingStore,
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
    interchangeable.) ``progress`` names a progress bar over query chunks, or over the blocks of
    an :class:`EmbeddingStore` bank, which is searched a block at a time.

    Example:
        >>> bank = np.array([[0.0], [1.0], [3.0]], dtype=np.float32)
        >>> faiss_knn(bank, bank, k=1, exclude_self=True)[0].ravel().tolist()
        [1.0, 1.0, 4.0]
    """
    wanted, queries = k + 1 if exclude_self else k, _as_float32(queries)
    if isinstance(bank, EmbeddingStore):
        best = None
        for start, block in _offset_blocks(bank, progress):
            found = faiss_knn(queries, block, min(wanted, len(block)), chunk=chunk)
            best = _merge(best, (torch.from_numpy(found[0]), torch.from_numpy(found[1]) + start), wanted)
        distances, indices = best[0].numpy(), best[1].numpy()
    else:
        bank = _as_float32(bank)
        starts = range(0, len(queries), chunk)
        # faiss.knn searches the bank in place; an index would keep a second copy of it.
        results = [
            faiss.knn(queries[start : start + chunk], bank, wanted)
            for start in tqdm(starts, desc=progress, disable=progress is None, leave=False)
        ]
        distances = np.concatenate([r[0] for r in results]).clip(min=0)
        indices = np.concatenate([r[1] for r in results])
    if not exclude_self:
        return distances, indices
    return distances[:, 1:], indices[:, 1:]


# Fit-time approximate search: query rows and bank rows compared at once in bfloat16 (a 16 MB
# block of products); (query, candidate) pairs re-ranked at once in float32 (two 32 MB gathers).
QUERY_CHUNK, BANK_BLOCK, PAIR_CHUNK = 1024, 8192, 16384


def knn_reranked(
    queries: torch.Tensor,
    bank: torch.Tensor | EmbeddingStore,
    k: int,
    exclude_self: bool = False,
    candidates: int = 16,
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate :func:`faiss_knn`: candidates ranked in bfloat16, re-ranked in float32.

    Each query's ``candidates`` nearest bank rows by ``|b|² − 2 q·b`` computed in bfloat16 are
    re-ranked by their float32 distance, so the distances returned are exact; a true neighbour
    is missed only when bfloat16's 8-bit mantissa ranks it below the candidates. On CPUs with
    AVX-512 BF16 or AMX, torch's bfloat16 matmul runs at over twice the float32 rate; elsewhere
    it is emulated and slower than :func:`faiss_knn`. The bank (a tensor or an
    :class:`EmbeddingStore`) is read twice, block by block, and converted one block at a time, so
    no bfloat16 copy of it is kept.

    Example:
        >>> bank = torch.randn(500, 16)
        >>> exact = faiss_knn(bank[:5], bank, k=2, exclude_self=True)[1]
        >>> bool((knn_reranked(bank[:5], bank, 2, True)[1] == exact).all())
        True
    """
    queries = torch.as_tensor(queries).float()
    if not isinstance(bank, EmbeddingStore):
        bank = torch.as_tensor(bank).float()
    wanted = k + 1 if exclude_self else k
    width = min(max(candidates, wanted), len(bank))
    low_queries = queries.bfloat16()
    best_values = torch.full((len(queries), width), float("inf"))
    best_rows = torch.zeros((len(queries), width), dtype=torch.long)
    for offset, rows in _offset_blocks(bank, progress):
        for start in range(0, len(rows), BANK_BLOCK):
            block = rows[start : start + BANK_BLOCK].float()
            block_norms = squared_norms(block).bfloat16()
            block = block.bfloat16()
            for first in range(0, len(queries), QUERY_CHUNK):
                chunk = slice(first, first + QUERY_CHUNK)
                ranking = torch.addmm(block_norms, low_queries[chunk], block.T, alpha=-2)
                values, found = ranking.topk(min(width, len(block)), dim=1, largest=False)
                found = found + offset + start
                merged = _merge((best_values[chunk], best_rows[chunk]), (values.float(), found), width)
                best_values[chunk], best_rows[chunk] = merged
    exact = _candidate_distances(queries, bank, best_rows)
    exact, order = exact.topk(wanted, dim=1, largest=False)
    distances, indices = exact.numpy(), best_rows.gather(1, order).numpy()
    if not exclude_self:
        return distances, indices
    return distances[:, 1:], indices[:, 1:]


def _candidate_distances(
    queries: torch.Tensor, bank: torch.Tensor | EmbeddingStore, rows: torch.Tensor
) -> torch.Tensor:
    """Float32 squared distances ``(Q, C)`` of each query to its ``C`` candidate rows of ``bank``.

    The pairs are visited in bank order, so the bank is read once, block by block.
    """
    flat = rows.reshape(-1)
    order = flat.argsort()
    ordered = flat[order]
    out = torch.empty(len(flat))
    for offset, block in _offset_blocks(bank):
        low, high = torch.searchsorted(ordered, torch.tensor([offset, offset + len(block)])).tolist()
        for first in range(low, high, PAIR_CHUNK):
            pairs = order[first : min(first + PAIR_CHUNK, high)]
            difference = block[flat[pairs] - offset].float() - queries[pairs // rows.shape[1]]
            out[pairs] = torch.linalg.vector_norm(difference, dim=1).square()
    return out.view(rows.shape)


def _offset_blocks(
    bank: torch.Tensor | EmbeddingStore, progress: str | None = None
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first row, rows)`` of a store's blocks in order, or of a tensor as one block."""
    blocks = bank.blocks() if isinstance(bank, EmbeddingStore) else [bank]
    offset = 0
    for block in tqdm(blocks, desc=progress, disable=progress is None, leave=False):
        yield offset, block
        offset += len(block)


def _merge(
    best: tuple[torch.Tensor, torch.Tensor] | None, found: tuple[torch.Tensor, torch.Tensor], width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``width`` smallest values (and their rows) of two ranked sets, ascending."""
    values, rows = found
    if best is not None:
        values, rows = torch.cat([best[0], values], dim=1), torch.cat([best[1], rows], dim=1)
    values, order = values.topk(min(width, values.shape[1]), dim=1, largest=False)
    return values, rows.gather(1, order)


def _as_float32(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.ascontiguousarray(array, dtype=np.float32)
