"""Minibatches of tokenized cells from an in-memory or backed AnnData matrix.

Batches are index lists drawn by :class:`LengthBucketBatchSampler`, which groups cells of similar
numbers of expressed genes so that padding to the longest cell of a batch wastes little work.
The dataset reads exactly the rows of one batch (sorted, so backed HDF5 reads stay sequential)
and tokenizes them; no dense cells x genes matrix is ever built.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.data._tokenize import DepthSpec, tokenize_counts


def observed_genes(var_to_position: np.ndarray) -> torch.Tensor:
    """``(19264,)`` bool tensor: the vocabulary genes some column maps to."""
    observed = torch.zeros(TOKENS.N_GENES, dtype=torch.bool)
    positions = np.asarray(var_to_position)
    observed[torch.from_numpy(positions[positions >= 0].astype(np.int64))] = True
    return observed


def row_lengths(X: Any, *, chunk_size: int = 65536) -> np.ndarray:
    """Number of stored entries per row, read from CSR pointers when possible."""
    indptr = getattr(X, "indptr", None)
    if indptr is None and hasattr(X, "group"):  # anndata backed sparse dataset
        indptr = X.group["indptr"][...]
    if indptr is not None and getattr(X, "format", "csr") == "csr":
        return np.diff(np.asarray(indptr)).astype(np.int64)
    lengths = np.empty(X.shape[0], dtype=np.int64)
    for start in range(0, X.shape[0], chunk_size):
        block = X[start : start + chunk_size]
        nnz = block.getnnz(axis=1) if hasattr(block, "getnnz") else (np.asarray(block) != 0).sum(1)
        lengths[start : start + chunk_size] = np.asarray(nnz).ravel()
    return lengths


def length_bucket(lengths: np.ndarray) -> np.ndarray:
    """Round lengths up onto a grid whose step is 1/8 of the power of two below each length.

    Cells in the same bucket pad each other by less than 12.5%; the grid is what makes batch
    sizes independent of the shuffle (see :class:`LengthBucketBatchSampler`).
    """
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 1)
    step = 2 ** np.maximum(0, np.floor(np.log2(lengths)).astype(np.int64) - 3)
    return -(-lengths // step) * step


def check_batching(batch_size: Any, max_tokens: Any) -> None:
    """Refuse a non-positive ``batch_size`` or ``max_tokens`` (``None`` allowed for the latter).

    A zero or negative size would otherwise put every cell of a chunk in one batch, silently.
    """
    checks = (("batch_size", batch_size, False), ("max_tokens", max_tokens, True))
    for name, value, optional in checks:
        if optional and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            allowed = "a positive integer" + (" or None" if optional else "")
            msg = f"{name} must be {allowed}, got {value!r}"
            raise ValueError(msg)


def token_budget_sizes(
    sorted_lengths: np.ndarray, batch_size: int, max_tokens: int | None
) -> list[int]:
    """Greedy batch sizes over ascending lengths.

    A batch holds at most ``batch_size`` cells and, when set, at most ``max_tokens`` padded
    tokens (cells x longest cell); a cell longer than ``max_tokens`` goes alone.
    """
    check_batching(batch_size, max_tokens)
    sizes: list[int] = []
    count = 0
    for length in sorted_lengths.tolist():
        over = max_tokens is not None and (count + 1) * length > max_tokens
        if count and (count == batch_size or over):
            sizes.append(count)
            count = 0
        count += 1
    if count:
        sizes.append(count)
    return sizes


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of cells with similar lengths, within a token budget, sharded by rank.

    Cells are ordered by :func:`length_bucket` of their length, in a random order within a
    bucket that changes every epoch, and cut into batches of at most ``batch_size`` cells and
    at most ``max_tokens`` padded tokens; the batch order is shuffled too. Because the cut is
    made on bucket lengths, the number and sizes of batches are the same in every epoch (the
    trainer counts them once), while which cells share a batch changes.

    Parameters
    ----------
    lengths
        Token count of every cell in ``indices`` (expressed genes, plus any extra tokens).
    indices
        Cell indices to draw from (e.g. the training split).
    batch_size
        Largest number of cells in a batch.
    max_tokens
        Largest number of padded tokens (cells x longest cell) in a batch; ``None`` for no
        limit. Bounds activation memory by tokens rather than by cells.
    shuffle
        Shuffle (deterministically from ``seed`` and the epoch) or keep cells sorted by length.
    seed
        Seed of the shuffles.
    drop_last
        Drop batches smaller than ``batch_size`` (only meaningful without ``max_tokens``).
    rank, world_size
        Distributed shard; defaults to the initialised process group, if any. Every rank gets the
        same number of batches and disjoint cells.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        indices: np.ndarray,
        batch_size: int,
        *,
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        check_batching(batch_size, max_tokens)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.buckets = length_bucket(lengths) if len(self.indices) else np.zeros(0, np.int64)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = (
            rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
        )
        self.world_size = world_size or (torch.distributed.get_world_size() if distributed else 1)
        self.epoch = 0
        self.sizes = token_budget_sizes(np.sort(self.buckets), batch_size, max_tokens)
        if drop_last:
            self.sizes = [n for n in self.sizes if n == batch_size]

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of ``epoch`` (called by Lightning at every epoch start)."""
        self.epoch = epoch

    def _all_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.indices)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        order = order[np.argsort(self.buckets[order], kind="stable")]
        bounds = np.cumsum([0, *self.sizes])
        batches = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        per_rank = len(batches) // self.world_size if self.world_size > 1 else len(batches)
        for batch in batches[self.rank :: self.world_size][:per_rank]:
            yield self.indices[batch].tolist()

    def __len__(self) -> int:
        n = len(self.sizes)
        return n // self.world_size if self.world_size > 1 else n


class CellBatchDataset(Dataset):
    """Map a list of cell indices to a tokenized :class:`SparseCells` minibatch.

    Parameters
    ----------
    X
        Raw counts, cells x user genes: scipy sparse, numpy, or an anndata backed dataset.
    var_to_position
        Vocabulary position of every column (-1 when not in the vocabulary).
    depth
        Target-depth semantics of the T token.
    batch_codes
        Optional integer batch code of every cell, carried in each minibatch
        (:attr:`SparseCells.batch`) for an objective that reads the batch.
    """

    def __init__(
        self,
        X: Any,
        var_to_position: np.ndarray,
        *,
        depth: DepthSpec | None = None,
        batch_codes: np.ndarray | None = None,
    ) -> None:
        self.batch_codes = None if batch_codes is None else np.asarray(batch_codes, np.int64)
        self.X = X
        self.var_to_position = np.asarray(var_to_position, dtype=np.int64)
        self.depth = depth or DepthSpec()
        self.observed = observed_genes(self.var_to_position)

    def __len__(self) -> int:
        return self.X.shape[0]

    def read_rows(self, indices: Sequence[int]) -> tuple[Any, np.ndarray]:
        """Rows in ascending order (fast on disk) and the permutation back to ``indices``."""
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        rows = self.X[indices[order]]
        return rows, np.argsort(order, kind="stable")

    def __getitem__(self, indices: Sequence[int]) -> SparseCells:
        rows, restore = self.read_rows(indices)
        rows = rows.tocsr()[restore] if hasattr(rows, "tocsr") else np.asarray(rows)[restore]
        cells = tokenize_counts(rows, self.var_to_position, depth=self.depth)
        if self.batch_codes is not None:
            batch = torch.from_numpy(self.batch_codes[np.asarray(indices, dtype=np.int64)])
            cells = replace(cells, batch=batch)
        return cells.with_observed(self.observed)


def identity_collate(batch: SparseCells) -> SparseCells:
    """The dataset already returns whole minibatches."""
    return batch
