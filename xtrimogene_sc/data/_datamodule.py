"""Lightning data module: train/validation split of one AnnData matrix, bucketed batches."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader

from xtrimogene_sc.data._loading import (
    CellBatchDataset,
    LengthBucketBatchSampler,
    identity_collate,
    row_lengths,
)
from xtrimogene_sc.data._tokenize import DepthSpec


class CellDataModule(pl.LightningDataModule):
    """Split cells into train/validation and serve tokenized, length-bucketed minibatches.

    Parameters
    ----------
    X
        Raw counts (cells x user genes), in memory or backed.
    var_to_position
        Vocabulary position of every column.
    batch_size
        Cells per minibatch.
    train_size
        Fraction of cells used for training; the rest validates (at least one cell when < 1).
    seed
        Seed of the split and of the batch order.
    num_workers
        DataLoader worker processes.
    depth
        Target-depth semantics of the T token.
    max_tokens
        Largest number of padded encoder tokens in a batch (``None``: cells only).
    max_genes
        Training cap on a cell's encoder genes (the model's ``max_encoder_genes``), used to
        count a long cell's tokens as the model will see them.
    extra_tokens
        Tokens every cell adds to its genes (2 with the read-depth tokens T and S).
    batch_codes
        Optional integer batch code of every cell, passed on in each minibatch.
    """

    def __init__(
        self,
        X: Any,
        var_to_position: np.ndarray,
        *,
        batch_size: int = 32,
        train_size: float = 0.9,
        seed: int = 0,
        num_workers: int = 0,
        depth: DepthSpec | None = None,
        max_tokens: int | None = None,
        max_genes: int | None = None,
        extra_tokens: int = 2,
        batch_codes: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < train_size <= 1.0:
            msg = f"train_size must lie in (0, 1], got {train_size}"
            raise ValueError(msg)
        self.dataset = CellBatchDataset(X, var_to_position, depth=depth, batch_codes=batch_codes)
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.max_tokens = max_tokens
        genes = row_lengths(X)
        self.lengths = (
            genes if max_genes is None else np.minimum(genes, max_genes)
        ) + extra_tokens
        n = X.shape[0]
        order = np.random.default_rng(seed).permutation(n)
        n_train = n if train_size == 1.0 else min(n - 1, max(1, int(round(train_size * n))))
        self.train_idx = np.sort(order[:n_train])
        self.val_idx = np.sort(order[n_train:])
        self.test_idx = np.array([], dtype=np.int64)

    @property
    def n_train(self) -> int:
        """Number of training cells."""
        return len(self.train_idx)

    @property
    def n_train_batches(self) -> int:
        """Training batches per epoch (fixed across epochs)."""
        return len(self._sampler(self.train_idx, shuffle=True))

    @property
    def n_val(self) -> int:
        """Number of validation cells."""
        return len(self.val_idx)

    def _sampler(self, indices: np.ndarray, *, shuffle: bool) -> LengthBucketBatchSampler:
        return LengthBucketBatchSampler(
            self.lengths[indices], indices, self.batch_size, max_tokens=self.max_tokens,
            shuffle=shuffle, seed=self.seed,
        )  # fmt: skip

    def _loader(self, indices: np.ndarray, *, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset,
            sampler=self._sampler(indices, shuffle=shuffle),
            batch_size=None,
            collate_fn=identity_collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_idx, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_idx, shuffle=False) if self.n_val else []
