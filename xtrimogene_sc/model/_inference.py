"""Streaming minibatches for inference: contiguous row chunks, length-sorted within a chunk."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from xtrimogene_sc.data._checks import to_csr_matrix
from xtrimogene_sc.data._tokenize import DepthSpec, tokenize_counts
from xtrimogene_sc.module._batch import SparseCells


def iter_batches(
    X: Any,
    var_to_position: np.ndarray,
    *,
    batch_size: int,
    depth: DepthSpec | None = None,
    chunk_size: int = 4096,
    progress: bool = True,
    desc: str = "cells",
) -> Iterator[tuple[np.ndarray, SparseCells]]:
    """Yield ``(row indices, minibatch)`` over all rows of ``X``.

    Rows are read ``chunk_size`` at a time (sequential reads for backed files); inside a chunk the
    cells are sorted by expressed-gene count so that each batch pads little. Memory is bounded by
    one chunk, whatever the number of cells.
    """
    n_obs = X.shape[0]
    with tqdm(total=n_obs, desc=desc, unit="cell", disable=not progress) as bar:
        for start in range(0, n_obs, chunk_size):
            block = to_csr_matrix(X[start : start + chunk_size])
            order = np.argsort(block.getnnz(axis=1), kind="stable")
            for i in range(0, len(order), batch_size):
                rows = order[i : i + batch_size]
                yield start + rows, tokenize_counts(block[rows], var_to_position, depth=depth)
                bar.update(len(rows))
