"""Rows collected batch by batch for a fit: in memory up to a budget, beyond it in a temporary file."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import numpy as np
import torch

# Bytes per block of stored rows. glibc serves an allocation above 32 MB (the ceiling of its
# dynamic mmap threshold) from its own mapping and unmaps it when freed. Per-batch tensors
# (17 MB for 8 images at 256 px) come from the heap instead, which keeps their pages after the
# rows are concatenated: the fit then held the embeddings twice (+450 MB on KolektorSDD).
BLOCK_BYTES = 64 * 2**20


class EmbeddingStore:
    """Rows appended batch by batch into large blocks, handed over once.

    Holding the rows costs their size plus at most one block, and :meth:`drain` returns the
    blocks' memory to the system as it concatenates them, so the fit never holds them twice.
    Once the rows exceed ``memory_bytes`` (if given), every block goes to an anonymous temporary
    file (in ``TMPDIR``, removed when the store is cleared or the process ends) and only one block
    stays in memory: the store then holds 64 MB however many rows come, and :meth:`blocks` and
    :meth:`take` read the rows back in order for a fit that streams them. ``spilled`` tells
    whether that happened.

    Example:
        >>> store = EmbeddingStore()
        >>> store.append(torch.zeros(2, 3))
        >>> store.append(torch.ones(1, 3))
        >>> len(store), store.take(torch.tensor([2, 0])).sum().item()
        (3, 3.0)
        >>> store.drain().sum().item(), len(store)
        (3.0, 0)
    """

    def __init__(self, memory_bytes: int | None = None) -> None:
        self.memory_bytes = memory_bytes
        # Order of the rows: the full blocks before the last (until the first spill), the file,
        # the last block's rows.
        self._blocks: list[torch.Tensor] = []
        self._last_rows = 0  # rows filled in the last block
        self._file = None
        self._file_rows = 0

    def __len__(self) -> int:
        """Rows stored."""
        return sum(len(block) for block in self._blocks[:-1]) + self._file_rows + self._last_rows

    @property
    def row_shape(self) -> torch.Size:
        """Shape of one row (empty store: ``()``)."""
        return self._blocks[0].shape[1:] if self._blocks else torch.Size()

    @property
    def spilled(self) -> bool:
        """Whether some rows live in the temporary file."""
        return self._file_rows > 0

    def append(self, rows: torch.Tensor) -> None:
        """Copy ``rows`` (any shape; stored along dim 0) to the CPU store."""
        rows = rows.detach()
        while len(rows):
            if not self._blocks or self._last_rows == len(self._blocks[-1]):
                self._next_block(rows)
            block = self._blocks[-1]
            count = min(len(rows), len(block) - self._last_rows)
            block[self._last_rows : self._last_rows + count] = rows[:count]
            self._last_rows += count
            rows = rows[count:]

    def _next_block(self, rows: torch.Tensor) -> None:
        """Start an empty last block: a new one, or past the budget the last one, all blocks on disk."""
        held = sum(block.numel() * block.element_size() for block in self._blocks)
        over_budget = self.memory_bytes is not None and held >= self.memory_bytes
        if self._blocks and (self._file is not None or over_budget):
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 (open as long as the store)
            self._file.seek(0, 2)
            for block in self._blocks:
                self._write(block)
            del self._blocks[:-1]
        else:
            per_block = max(1, BLOCK_BYTES // max(1, rows[0].numel() * rows.element_size()))
            self._blocks.append(torch.empty(per_block, *rows.shape[1:], dtype=rows.dtype))
        self._last_rows = 0

    def _write(self, block: torch.Tensor) -> None:
        try:
            self._file.write(_bytes(block).data)
        except OSError as error:
            size = (self._file_rows + len(block)) * block[0].numel() * block.element_size()
            msg = (
                f"Could not write the collected embeddings ({size / 2**30:.1f} GiB so far) to a "
                f"temporary file in {tempfile.gettempdir()}: {error}. Point TMPDIR to a disk with room."
            )
            raise OSError(msg) from error
        self._file_rows += len(block)

    def blocks(self) -> Iterator[torch.Tensor]:
        """Every row in order, a block at a time (blocks in memory as views, the file's read back)."""
        yield from self._blocks[:-1]
        if self._file_rows:
            last = self._blocks[-1]
            for start in range(0, self._file_rows, len(last)):
                yield self._read(start, min(len(last), self._file_rows - start))
        if self._blocks:
            yield self._blocks[-1][: self._last_rows]

    def _read(self, start: int, count: int) -> torch.Tensor:
        last = self._blocks[-1]
        out = last.new_empty(count, *last.shape[1:])
        self._file.seek(start * last[0].numel() * last.element_size())
        self._file.readinto(_bytes(out))
        return out

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """The rows at ``indices`` (1-D, any order, repeats allowed), in one pass over the blocks."""
        if not self._blocks:
            msg = "The embedding store is empty."
            raise ValueError(msg)
        if len(indices) and not 0 <= int(indices.min()) <= int(indices.max()) < len(self):
            msg = f"row indices must lie in [0, {len(self)}), got {int(indices.min())}..{int(indices.max())}."
            raise IndexError(msg)
        order = indices.argsort()
        wanted = indices[order]
        first = self._blocks[0]
        out = first.new_empty(len(indices), *first.shape[1:])
        start = 0
        for block in self.blocks():
            low, high = torch.searchsorted(wanted, torch.tensor([start, start + len(block)])).tolist()
            out[order[low:high]] = block[wanted[low:high] - start]
            start += len(block)
        return out

    def clear(self) -> None:
        """Forget every row (and remove the temporary file)."""
        self._blocks.clear()
        self._last_rows = 0
        if self._file is not None:
            self._file.close()
        self._file, self._file_rows = None, 0

    def drain(self) -> torch.Tensor:
        """All rows as one tensor; the store is empty afterwards."""
        if not self._blocks:
            msg = "The embedding store is empty."
            raise ValueError(msg)
        last = self._blocks[-1]
        out = last.new_empty(len(self), *last.shape[1:])
        start = 0
        while len(self._blocks) > 1:  # free each block in memory as soon as it is copied
            block = self._blocks.pop(0)
            out[start : start + len(block)] = block
            start += len(block)
            del block
        for block in self.blocks():
            out[start : start + len(block)] = block
            start += len(block)
        self.clear()
        return out


def _bytes(block: torch.Tensor) -> np.ndarray:
    """The raw bytes of a contiguous tensor, as a writable numpy view."""
    return block.reshape(-1).view(torch.uint8).numpy()
