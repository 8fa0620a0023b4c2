"""The store that collects training embeddings in large blocks for the memory-bank models."""

from __future__ import annotations

import pytest
import torch

from anomalib_pdae.models.components import memory_bank
from anomalib_pdae.models.components.memory_bank import EmbeddingStore


def test_rows_come_back_in_order_across_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_bank, "BLOCK_BYTES", 5 * 4 * 4)  # five rows of four float32
    store = EmbeddingStore()
    batches = [torch.arange(n * 4, dtype=torch.float32).reshape(n, 4) + 100 * n for n in (3, 7, 1, 5)]
    for batch in batches:
        store.append(batch)
    assert len(store) == 16
    assert len(store._blocks) == 4  # 16 rows in blocks of 5: the last one partly filled
    assert torch.equal(store.drain(), torch.cat(batches))
    assert len(store) == 0


def test_keeps_trailing_shape_and_dtype() -> None:
    store = EmbeddingStore()
    batch = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    store.append(batch)
    out = store.drain()
    assert out.dtype == torch.float64
    assert torch.equal(out, batch)


def test_copies_rows_so_later_changes_do_not_leak() -> None:
    store = EmbeddingStore()
    batch = torch.zeros(2, 3)
    store.append(batch)
    batch += 1
    assert store.drain().sum().item() == 0


def test_clear_and_empty_drain() -> None:
    store = EmbeddingStore()
    store.append(torch.ones(4, 2))
    store.clear()
    assert not store
    with pytest.raises(ValueError, match="empty"):
        store.drain()
    store.append(torch.ones(1, 2))
    assert store.drain().shape == (1, 2)
