from __future__ import annotations

import weakref

import numpy as np
import pytest
import scipy.sparse as sp
from torch.utils.data import DataLoader

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.module import SparseCells
from xtrimogene_sc.pretrain._sources import CellSource
from xtrimogene_sc.pretrain._stream import (
    StreamingCellDataset,
    assign_pieces,
    rebatch,
    shuffle_blocks,
    split_pieces,
)


class MemorySource:
    """In-memory CellSource; cell ``g`` stores ``g + 1`` at vocabulary position 0 (its id)."""

    def __init__(self, sizes: list[int], n_genes: int = 3) -> None:
        self.shards: dict[str, sp.csr_matrix] = {}
        first = 0
        rng = np.random.default_rng(0)
        for i, n in enumerate(sizes):
            rows = []
            for g in range(first, first + n):
                genes = np.sort(rng.choice(np.arange(1, 500), size=n_genes - 1, replace=False))
                rows.append((np.r_[0, genes], np.r_[g + 1, rng.integers(1, 5, n_genes - 1)]))
            indptr = np.r_[0, np.cumsum([len(c) for c, _ in rows])]
            self.shards[f"shard{i}"] = sp.csr_matrix(
                (
                    np.concatenate([v for _, v in rows]).astype(np.float32),
                    np.concatenate([c for c, _ in rows]),
                    indptr,
                ),
                shape=(n, TOKENS.N_GENES),
            )
            first += n
        self.n_cells = first

    def shard_ids(self):
        return list(self.shards)

    def shard_size(self, shard_id):
        return self.shards[shard_id].shape[0]

    def read_shard(self, shard_id, *, block_size=4096, start=0, stop=None):
        X = self.shards[shard_id]
        stop = X.shape[0] if stop is None else stop
        for lo in range(start, stop, block_size):
            yield X[lo : min(lo + block_size, stop)]


def cell_ids(batch: sp.csr_matrix) -> np.ndarray:
    return batch[:, 0].toarray().ravel().astype(int) - 1


def keep_csr(batch: sp.csr_matrix) -> sp.csr_matrix:
    return batch


def epoch_ids(ds: StreamingCellDataset, num_workers: int = 0) -> list[np.ndarray]:
    loader = DataLoader(ds, batch_size=None, num_workers=num_workers)
    return [cell_ids(b) for b in loader]


def make(source, **kwargs) -> StreamingCellDataset:
    kwargs = {
        "batch_size": 16,
        "shuffle_buffer": 32,
        "transform": keep_csr,
        "block_size": 8,
    } | kwargs
    return StreamingCellDataset(source, **kwargs)


def test_memory_source_is_a_cell_source():
    assert isinstance(MemorySource([5]), CellSource)


def test_shuffle_buffer_is_bounded_and_a_permutation():
    blocks = [np.arange(i, i + 10) for i in range(0, 1000, 10)]
    csr_blocks = (sp.csr_matrix(b[:, None].astype(np.float32) + 1) for b in blocks)
    out = np.concatenate(
        [o.toarray().ravel() - 1 for o in shuffle_blocks(csr_blocks, 50, np.random.default_rng(0))]
    )
    np.testing.assert_array_equal(np.sort(out), np.arange(1000))
    # a cell cannot leave before it was read: at most 2 x buffer + one block ahead of the output
    assert np.all(out <= np.arange(1000) + 2 * 50 + 10)
    # and cannot stay longer than the buffer allows on average: order is far from sequential
    assert np.mean(np.abs(out - np.arange(1000))) > 10
    assert np.abs(out - np.arange(1000)).max() < 1000 // 2


def test_shuffle_buffer_keeps_few_blocks_alive():
    alive = set()

    def blocks():
        for i in range(300):
            block = sp.csr_matrix(np.full((10, 1), i + 1, dtype=np.float32))
            alive.add(i)
            weakref.finalize(block, alive.discard, i)
            yield block

    peak = 0
    for _ in shuffle_blocks(blocks(), 40, np.random.default_rng(0)):
        peak = max(peak, len(alive))
    assert peak <= 4 * 40 // 10 + 2  # about 4 x buffer cells, whatever the stream length


def test_rebatch_cuts_exact_batches():
    chunks = [sp.csr_matrix(np.ones((n, 2))) for n in (3, 7, 1, 12)]
    sizes = [b.shape[0] for b in rebatch(chunks, 5)]
    assert sizes == [5, 5, 5, 5, 3]


def test_pieces_are_balanced_and_cover_each_shard():
    pieces = split_pieces({"a": 100, "b": 37, "c": 0}, 30)
    assert sum(b - a for _, a, b in pieces) == 137
    assert max(b - a for _, a, b in pieces) <= 30
    dealt = assign_pieces(pieces, 3, seed=0, epoch=0)
    loads = [sum(b - a for _, a, b in p) for p in dealt]
    assert sum(loads) == 137
    assert max(loads) - min(loads) <= 30


def test_batches_mix_shards_through_the_buffer():
    source = MemorySource([200, 200, 200, 200])
    first = epoch_ids(make(source, shuffle_buffer=64))[0]
    assert len(np.unique(first // 200)) >= 2  # cells of several files in one batch


@pytest.mark.parametrize("num_workers", [0, 2])
def test_ranks_and_workers_partition_the_corpus(num_workers):
    source = MemorySource([64] * 8)
    seen = []
    for rank in range(2):
        ds = make(source, rank=rank, world_size=2, num_workers=num_workers)
        batches = epoch_ids(ds, num_workers)
        assert len(batches) == len(ds) == 16
        seen.append(np.concatenate(batches))
    everything = np.concatenate(seen)
    assert len(np.intersect1d(seen[0], seen[1])) == 0
    np.testing.assert_array_equal(np.sort(everything), np.arange(512))


def test_order_depends_only_on_seed_and_epoch():
    source = MemorySource([50, 70, 90])
    ds = make(source)
    a = np.concatenate(epoch_ids(ds))
    b = np.concatenate(epoch_ids(make(source)))
    ds.set_epoch(1)
    c = np.concatenate(epoch_ids(ds))
    other_seed = np.concatenate(epoch_ids(make(source, seed=1)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, other_seed)
    np.testing.assert_array_equal(np.sort(a), np.sort(c))


@pytest.mark.parametrize(("num_workers", "k"), [(0, 5), (2, 3), (2, 6)])
def test_start_batch_reproduces_the_tail(num_workers, k):
    source = MemorySource([40, 60, 30, 70])
    ds = make(source, num_workers=num_workers, piece_size=25)
    ds.set_epoch(2)
    full = epoch_ids(ds, num_workers)
    ds.set_start_batch(k)
    tail = epoch_ids(ds, num_workers)
    assert len(tail) == len(full) - k
    for x, y in zip(tail, full[k:], strict=True):
        np.testing.assert_array_equal(x, y)


def test_unequal_shards_keep_ranks_in_lockstep():
    source = MemorySource([100, 37, 250, 64, 9])
    counts = [len(epoch_ids(make(source, rank=r, world_size=3, piece_size=40))) for r in range(3)]
    assert counts[0] == counts[1] == counts[2] == len(make(source, world_size=3, piece_size=40))


def test_min_genes_drops_cells_but_keeps_the_batch_count():
    source = MemorySource([80, 80], n_genes=3)
    short = source.shards["shard0"]
    short.data[short.indptr[:-1][::2] + 1] = 0  # every other cell of shard0 loses a gene
    short.eliminate_zeros()
    ds = make(source, min_genes=3, drop_last=True, world_size=2, rank=0)
    ds1 = make(source, min_genes=3, drop_last=True, world_size=2, rank=1)
    ids = np.concatenate(epoch_ids(ds) + epoch_ids(ds1))
    assert len(ids) == 2 * len(ds) * 16
    kept = np.flatnonzero(np.diff(short.indptr) >= 3)
    assert not np.isin(np.setdiff1d(np.arange(80), kept), ids).any()


def test_default_transform_yields_sparse_cells():
    source = MemorySource([40])
    ds = StreamingCellDataset(source, batch_size=16, shuffle_buffer=8)
    batches = list(ds)
    assert all(isinstance(b, SparseCells) for b in batches)
    assert [b.n_cells for b in batches] == [16, 16, 8]
    assert batches[0].pos.max() < TOKENS.N_GENES


def test_too_few_pieces_for_consumers_raises():
    ds = make(MemorySource([10, 10]), world_size=3)
    with pytest.raises(ValueError, match="consumers"):
        list(ds)
