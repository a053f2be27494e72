"""Minibatches of tokenized cells from an in-memory or backed AnnData matrix.

Batches are index lists drawn by :class:`LengthBucketBatchSampler`, which groups cells of similar
numbers of expressed genes so that padding to the longest cell of a batch wastes little work.
The dataset reads exactly the rows of one batch (sorted, so backed HDF5 reads stay sequential)
and tokenizes them; no dense cells x genes matrix is ever built.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from xtrimogene_sc.data._tokenize import DepthSpec, tokenize_counts
from xtrimogene_sc.module._batch import SparseCells


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


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Shuffled batches of cells with similar lengths, sharded across distributed ranks.

    Parameters
    ----------
    lengths
        Expressed-gene count of every cell in ``indices``.
    indices
        Cell indices to draw from (e.g. the training split).
    batch_size
        Cells per batch.
    shuffle
        Shuffle (deterministically from ``seed`` and the epoch) or keep the given order.
    bucket_batches
        Cells are sorted by length inside windows of ``bucket_batches * batch_size`` cells.
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
        shuffle: bool = True,
        bucket_batches: int = 50,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if batch_size < 1:
            msg = f"batch_size must be >= 1, got {batch_size}"
            raise ValueError(msg)
        self.lengths = np.asarray(lengths)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucket_batches = bucket_batches
        self.seed = seed
        self.drop_last = drop_last
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = (
            rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
        )
        self.world_size = world_size or (torch.distributed.get_world_size() if distributed else 1)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of ``epoch`` (called by Lightning at every epoch start)."""
        self.epoch = epoch

    def _all_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = (
            rng.permutation(len(self.indices)) if self.shuffle else np.arange(len(self.indices))
        )
        window = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(order), window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [
                chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)
            ]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        per_rank = len(batches) // self.world_size if self.world_size > 1 else len(batches)
        for batch in batches[self.rank :: self.world_size][:per_rank]:
            yield self.indices[batch].tolist()

    def __len__(self) -> int:
        n = len(self.indices) // self.batch_size
        if not self.drop_last and len(self.indices) % self.batch_size:
            n += 1
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
    """

    def __init__(
        self, X: Any, var_to_position: np.ndarray, *, depth: DepthSpec | None = None
    ) -> None:
        self.X = X
        self.var_to_position = np.asarray(var_to_position, dtype=np.int64)
        self.depth = depth or DepthSpec()

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
        return tokenize_counts(rows, self.var_to_position, depth=self.depth)


def identity_collate(batch: SparseCells) -> SparseCells:
    """The dataset already returns whole minibatches."""
    return batch
