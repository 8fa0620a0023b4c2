"""The store that collects training embeddings in large blocks, spilling to disk past a budget."""

from __future__ import annotations

import pytest
import torch

from anomalib_pdae.models.components import embedding_store
from anomalib_pdae.models.components.embedding_store import EmbeddingStore

ROW_BYTES = 4 * 4  # four float32


def _batches() -> list[torch.Tensor]:
    return [torch.arange(n * 4, dtype=torch.float32).reshape(n, 4) + 100 * n for n in (3, 7, 1, 5, 9, 2)]


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding_store, "BLOCK_BYTES", 5 * ROW_BYTES)


@pytest.mark.usefixtures("small_blocks")
def test_rows_come_back_in_order_across_blocks() -> None:
    store = EmbeddingStore()
    for batch in _batches()[:4]:
        store.append(batch)
    assert len(store) == 16
    assert len(store._blocks) == 4  # 16 rows in blocks of 5: the last one partly filled
    assert not store.spilled
    assert torch.equal(store.drain(), torch.cat(_batches()[:4]))
    assert len(store) == 0


@pytest.mark.usefixtures("small_blocks")
def test_past_the_budget_every_block_goes_to_disk_and_comes_back_in_order() -> None:
    store = EmbeddingStore(memory_bytes=10 * ROW_BYTES)  # two blocks of five rows
    for batch in _batches():
        store.append(batch)
    expected = torch.cat(_batches())
    assert store.spilled
    assert len(store) == len(expected) == 27
    assert len(store._blocks) == 1  # only the block being filled stays in memory
    assert store.row_shape == (4,)
    assert torch.equal(torch.cat(list(store.blocks())), expected)
    indices = torch.tensor([26, 0, 13, 13, 5, 25, 1])
    assert torch.equal(store.take(indices), expected[indices])
    assert torch.equal(store.drain(), expected)
    assert not store.spilled and len(store) == 0 and store._file is None


def test_in_memory_until_the_budget() -> None:
    store = EmbeddingStore(memory_bytes=2**30)
    store.append(torch.ones(100, 8))
    assert not store.spilled


@pytest.mark.usefixtures("small_blocks")
def test_take_refuses_rows_out_of_range_and_an_empty_store() -> None:
    store = EmbeddingStore(memory_bytes=0)
    with pytest.raises(ValueError, match="empty"):
        store.take(torch.tensor([0]))
    store.append(torch.ones(12, 4))
    with pytest.raises(IndexError, match=r"\[0, 12\)"):
        store.take(torch.tensor([3, 12]))


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


@pytest.mark.usefixtures("small_blocks")
def test_clear_and_empty_drain() -> None:
    store = EmbeddingStore(memory_bytes=0)
    store.append(torch.ones(12, 4))
    assert store.spilled
    store.clear()
    assert not store and not store.spilled
    with pytest.raises(ValueError, match="empty"):
        store.drain()
    store.append(torch.ones(1, 4))
    assert store.drain().shape == (1, 4)


@pytest.mark.usefixtures("small_blocks")
def test_a_full_disk_is_reported_with_the_folder_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    class FullDisk:
        def seek(self, *args) -> None: ...

        def write(self, data) -> None:
            raise OSError(28, "No space left on device")

        def close(self) -> None: ...

    monkeypatch.setattr(embedding_store.tempfile, "TemporaryFile", FullDisk)
    store = EmbeddingStore(memory_bytes=0)
    with pytest.raises(OSError, match=r"No space left on device.*TMPDIR"):
        store.append(torch.ones(12, 4))
