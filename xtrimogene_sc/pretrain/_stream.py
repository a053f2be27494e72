"""Stream shuffled minibatches from a sharded corpus to every (rank, dataloader worker).

Per epoch, shards are cut into pieces of at most ``piece_size`` cells, the pieces are shuffled by
``(seed, epoch)`` and dealt to the ``world_size x num_workers`` consumers (each piece to the
consumer holding the fewest cells so far, which is round-robin for equal pieces), so every cell
belongs to exactly one consumer. A consumer reads ``interleave`` of its pieces at a time, in
random block order, through a bounded shuffle buffer; its output is deterministic given seed,
epoch, rank and worker. Every consumer stops after the same number of batches (the smallest
consumer's), so DDP ranks stay in lockstep and the DataLoader's round-robin over workers is
exact, which makes :meth:`StreamingCellDataset.set_start_batch` reproduce an interrupted epoch.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import IterableDataset, get_worker_info

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.data._tokenize import tokenize_counts

from ._sources import CellSource

logger = logging.getLogger(__name__)

Piece = tuple[str, int, int]  # (shard id, first row, stop row)
_IDENTITY = np.arange(TOKENS.N_GENES, dtype=np.int64)


def tokenize_aligned(block: sp.csr_matrix) -> SparseCells:
    """Default transform: tokenize aligned raw counts with T = S."""
    return tokenize_counts(block, _IDENTITY)


def split_pieces(sizes: dict[str, int], piece_size: int) -> list[Piece]:
    """Cut each shard into nearly equal contiguous pieces of at most ``piece_size`` rows."""
    pieces = []
    for shard, n in sizes.items():
        k = max(1, math.ceil(n / piece_size))
        bounds = np.linspace(0, n, k + 1).round().astype(int)
        pieces += [
            (shard, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a
        ]
    return pieces


def assign_pieces(
    pieces: list[Piece], n_consumers: int, *, seed: int, epoch: int, shuffle: bool = True
) -> list[list[Piece]]:
    """Deal pieces (shuffled by seed and epoch) to consumers, balancing their cell counts."""
    order = np.arange(len(pieces))
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(len(pieces))
    loads = np.zeros(n_consumers, dtype=np.int64)
    assigned: list[list[Piece]] = [[] for _ in range(n_consumers)]
    for i in order:
        target = int(np.argmin(loads))  # first of the least loaded: round-robin for equal pieces
        assigned[target].append(pieces[i])
        loads[target] += pieces[i][2] - pieces[i][1]
    return assigned


def take_rows(
    blocks: list[sp.csr_matrix], block_ids: np.ndarray, rows: np.ndarray
) -> sp.csr_matrix:
    """Rows ``rows[i]`` of ``blocks[block_ids[i]]``, in that order, copied once into one CSR."""
    starts = np.empty(len(rows), dtype=np.int64)
    lengths = np.empty(len(rows), dtype=np.int64)
    for b in np.unique(block_ids):
        where = np.flatnonzero(block_ids == b)
        starts[where] = blocks[b].indptr[rows[where]]
        lengths[where] = blocks[b].indptr[rows[where] + 1] - starts[where]
    out_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_ptr[1:])
    data = np.empty(out_ptr[-1], dtype=blocks[0].data.dtype)
    indices = np.empty(out_ptr[-1], dtype=np.int32)
    src_data = [b.data for b in blocks]
    src_indices = [b.indices for b in blocks]
    # one contiguous copy per row: far cheaper than fancy indexing over every stored entry
    plan = zip(
        block_ids.tolist(), starts.tolist(), out_ptr[:-1].tolist(), lengths.tolist(), strict=True
    )
    for b, a, o, n in plan:
        data[o : o + n] = src_data[b][a : a + n]
        indices[o : o + n] = src_indices[b][a : a + n]
    return sp.csr_matrix((data, indices, out_ptr), shape=(len(rows), blocks[0].shape[1]))


def _row_slice(X: sp.csr_matrix, start: int, stop: int) -> sp.csr_matrix:
    """Rows ``start:stop`` sharing ``X``'s data and indices (no copy)."""
    a, b = int(X.indptr[start]), int(X.indptr[stop])
    ptr = X.indptr[start : stop + 1] - a
    return sp.csr_matrix((X.data[a:b], X.indices[a:b], ptr), shape=(stop - start, X.shape[1]))


def shuffle_blocks(
    blocks: Iterable[sp.csr_matrix], buffer_size: int, rng: np.random.Generator
) -> Iterator[sp.csr_matrix]:
    """Shuffle a stream of CSR blocks through a buffer of about ``buffer_size`` cells.

    Once ``2 * buffer_size`` cells are buffered, a random half is emitted (in random order) and the
    other half stays; at the end the remainder is emitted shuffled. Buffered cells stay in their
    blocks (only references move); when the blocks kept alive hold more than ``3 * buffer_size``
    rows, the buffered cells are compacted into one block. At most about ``4 * buffer_size`` cells
    plus one block are held. ``buffer_size <= 1`` passes blocks through unchanged.
    """
    if buffer_size <= 1:
        yield from blocks
        return
    held: list[sp.csr_matrix] = []
    ref_block = ref_row = np.zeros(0, dtype=np.int64)
    for block in blocks:
        ref_block = np.concatenate([ref_block, np.full(block.shape[0], len(held))])
        ref_row = np.concatenate([ref_row, np.arange(block.shape[0])])
        held.append(block)
        if len(ref_row) < 2 * buffer_size:
            continue
        perm = rng.permutation(len(ref_row))
        out, stay = perm[: len(perm) - buffer_size], perm[len(perm) - buffer_size :]
        yield take_rows(held, ref_block[out], ref_row[out])
        ref_block, ref_row = ref_block[stay], ref_row[stay]
        if sum(b.shape[0] for b in held) > 3 * buffer_size:
            held = [take_rows(held, ref_block, ref_row)]
            ref_block, ref_row = np.zeros(buffer_size, dtype=np.int64), np.arange(buffer_size)
    if len(ref_row):
        perm = rng.permutation(len(ref_row))
        yield take_rows(held, ref_block[perm], ref_row[perm])


def rebatch(chunks: Iterable[sp.csr_matrix], batch_size: int) -> Iterator[sp.csr_matrix]:
    """Cut a stream of CSR chunks into batches of ``batch_size`` rows (the last may be smaller)."""
    carry: list[sp.csr_matrix] = []
    n_carry = 0
    for chunk in chunks:
        start = 0
        if carry:
            start = min(batch_size - n_carry, chunk.shape[0])
            carry.append(_row_slice(chunk, 0, start))
            n_carry += start
            if n_carry < batch_size:
                continue
            yield sp.vstack(carry, format="csr")
            carry, n_carry = [], 0
        while chunk.shape[0] - start >= batch_size:
            yield _row_slice(chunk, start, start + batch_size)
            start += batch_size
        if start < chunk.shape[0]:
            carry, n_carry = [_row_slice(chunk, start, chunk.shape[0])], chunk.shape[0] - start
    if carry:
        yield sp.vstack(carry, format="csr")


class StreamingCellDataset(IterableDataset):
    """Shuffled minibatches of cells streamed from a :class:`CellSource`.

    Parameters
    ----------
    source
        The corpus (:class:`H5adDirectorySource`, :class:`PreprocessedSource`, :class:`SomaSource`).
    batch_size
        Cells per minibatch.
    shuffle_buffer
        Cells held by each consumer's shuffle buffer; ``0`` (or 1) turns shuffling off: pieces are
        dealt in source order and read in file order.
    seed
        Seed of piece assignment and shuffling; with the epoch it fixes the data order.
    transform
        Maps an aligned raw-count CSR batch to :class:`SparseCells` (default: tokenize with T = S).
    drop_last
        Drop a final incomplete batch.
    min_genes
        Drop cells with fewer expressed vocabulary genes (cells without vocabulary counts are always
        dropped). A consumer that runs short because of dropped cells re-reads its pieces to keep
        the batch count, so prefer QC in :func:`preprocess_h5ad`.
    rank, world_size
        Distributed position; default from ``torch.distributed`` when initialised, else 0 and 1.
    num_workers
        DataLoader workers the dataset is read with; only used so that ``len()`` is exact.
    piece_size
        Shards are cut into pieces of at most this many cells before being dealt to consumers.
    interleave
        Pieces each consumer reads at once (blocks drawn at random), so batches mix files.
    block_size
        Rows read from a shard at a time.

    Notes
    -----
    Use ``DataLoader(dataset, batch_size=None, num_workers=...)`` without persistent workers, and
    call :meth:`set_epoch` (and :meth:`set_start_batch` when resuming) before each epoch.
    """

    def __init__(
        self,
        source: CellSource,
        *,
        batch_size: int,
        shuffle_buffer: int = 16384,
        seed: int = 0,
        transform: Callable[[sp.csr_matrix], SparseCells] | None = None,
        drop_last: bool = False,
        min_genes: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        num_workers: int = 0,
        piece_size: int = 65536,
        interleave: int = 4,
        block_size: int = 4096,
    ) -> None:
        if min(batch_size, piece_size, interleave, block_size) < 1 or shuffle_buffer < 0:
            msg = "batch_size, piece_size, interleave and block_size must be >= 1, shuffle_buffer >= 0"
            raise ValueError(msg)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = (
            rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
        )
        self.world_size = world_size or (torch.distributed.get_world_size() if distributed else 1)
        if not 0 <= self.rank < self.world_size:
            msg = f"rank {self.rank} is outside world_size {self.world_size}"
            raise ValueError(msg)
        self.source, self.batch_size, self.shuffle_buffer = source, batch_size, shuffle_buffer
        self.seed, self.drop_last, self.min_genes = seed, drop_last, min_genes
        self.transform = transform or tokenize_aligned
        self.num_workers, self.block_size, self.interleave = num_workers, block_size, interleave
        self.pieces = split_pieces(
            {s: source.shard_size(s) for s in source.shard_ids()}, piece_size
        )
        self.epoch = 0
        self.start_batch = 0
        self._warned: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the data order of ``epoch``."""
        self.epoch = epoch

    def set_start_batch(self, k: int) -> None:
        """Skip the first ``k`` batches (of this rank) of the current epoch, e.g. to resume."""
        if k < 0:
            msg = f"start batch must be >= 0, got {k}"
            raise ValueError(msg)
        self.start_batch = k

    def plan(self, n_workers: int) -> tuple[list[list[Piece]], int]:
        """Pieces of every consumer (rank-major) and the batches each consumer yields."""
        n_consumers = self.world_size * max(n_workers, 1)
        assigned = assign_pieces(
            self.pieces,
            n_consumers,
            seed=self.seed,
            epoch=self.epoch,
            shuffle=self.shuffle_buffer > 1,
        )
        cells = [sum(b - a for _, a, b in pieces) for pieces in assigned]
        if min(cells) == 0:
            msg = (
                f"{len(self.pieces)} shard pieces cannot feed {n_consumers} consumers "
                f"(ranks x workers); use fewer workers or a smaller piece_size."
            )
            raise ValueError(msg)
        round_ = math.floor if self.drop_last else math.ceil
        quota = min(round_(c / self.batch_size) for c in cells)
        used = sum(min(quota * self.batch_size, c) for c in cells)
        if used < 0.9 * sum(cells) and self._warned != (self.epoch, n_consumers):
            self._warned = (self.epoch, n_consumers)
            logger.warning(
                "epoch %d uses %d of %d cells: pieces are unequal across %d consumers; a smaller "
                "piece_size balances them better",
                self.epoch, used, sum(cells), n_consumers,
            )  # fmt: skip
        return assigned, quota

    def __len__(self) -> int:
        return self.plan(self.num_workers)[1] * max(self.num_workers, 1)

    def __iter__(self) -> Iterator[SparseCells]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        if max(self.num_workers, 1) != n_workers:
            logger.info(
                "read by %d workers but num_workers=%d: len() is approximate",
                n_workers,
                self.num_workers,
            )
        assigned, quota = self.plan(n_workers)
        # Resuming at batch k: physical worker w plays logical worker (w + k) % W, so that the
        # DataLoader's round-robin starts with the worker that owns global batch k.
        logical = (worker + self.start_batch) % n_workers
        skip = len(range(logical, self.start_batch, n_workers))
        consumer = self.rank * n_workers + logical
        rng = np.random.default_rng([self.seed, self.epoch, consumer])
        pieces = assigned[consumer]
        need = min(quota * self.batch_size, sum(b - a for _, a, b in pieces))
        blocks = self._blocks(pieces, need, rng)
        batches = rebatch(shuffle_blocks(blocks, self.shuffle_buffer, rng), self.batch_size)
        for i, batch in enumerate(batches):
            if i >= quota:
                break
            if i >= skip and (batch.shape[0] == self.batch_size or not self.drop_last):
                yield self.transform(batch)

    def _blocks(
        self, pieces: list[Piece], need: int, rng: np.random.Generator
    ) -> Iterator[sp.csr_matrix]:
        """QC-filtered blocks of a consumer's pieces, re-read while fewer than ``need`` cells passed."""
        n_kept = 0
        for pass_ in itertools.count():
            order = pieces if pass_ == 0 else [pieces[i] for i in rng.permutation(len(pieces))]
            before = n_kept
            for block in self._interleaved(order, rng):
                keep = np.diff(block.indptr) >= max(self.min_genes, 1)
                n_kept += int(keep.sum())
                if keep.all():
                    yield block
                elif keep.any():
                    yield take_rows(
                        [block], np.zeros(int(keep.sum()), np.int64), np.flatnonzero(keep)
                    )
            if n_kept >= need:
                return
            if n_kept == before:
                msg = f"no cell with >= {max(self.min_genes, 1)} expressed vocabulary genes in {pieces}"
                raise ValueError(msg)
            logger.debug(
                "QC dropped cells: re-reading pieces (pass %d) to fill the quota", pass_ + 1
            )

    def _interleaved(
        self, pieces: list[Piece], rng: np.random.Generator
    ) -> Iterator[sp.csr_matrix]:
        """Blocks of several pieces at a time, the next block drawn from a random open piece."""
        k = self.interleave if self.shuffle_buffer > 1 else 1
        waiting = iter(pieces)
        open_: list[Iterator[sp.csr_matrix]] = []
        while True:
            while len(open_) < k and (piece := next(waiting, None)) is not None:
                shard, start, stop = piece
                open_.append(
                    self.source.read_shard(
                        shard, block_size=self.block_size, start=start, stop=stop
                    )
                )
            if not open_:
                return
            i = int(rng.integers(len(open_))) if len(open_) > 1 else 0
            block = next(open_[i], None)
            if block is None:
                open_.pop(i)
            else:
                yield block
