"""Streaming minibatches for inference: contiguous row chunks, length-sorted within a chunk."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.data._checks import CountCheck, to_csr_matrix
from xtrimogene_sc.data._loading import token_budget_sizes
from xtrimogene_sc.data._tokenize import DepthSpec, tokenize_counts


def iter_batches(
    X: Any,
    var_to_position: np.ndarray,
    *,
    batch_size: int,
    depth: DepthSpec | None = None,
    max_tokens: int | None = None,
    extra_tokens: int = 2,
    chunk_size: int = 4096,
    progress: bool = True,
    desc: str = "cells",
    check: CountCheck | None = None,
    panel: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, SparseCells]]:
    """Yield ``(row indices, minibatch)`` over all rows of ``X``.

    Rows are read ``chunk_size`` at a time (sequential reads for backed files); inside a chunk the
    cells are sorted by expressed-gene count so that each batch pads little, and cut into batches
    of at most ``batch_size`` cells and ``max_tokens`` padded tokens (each cell counting its genes
    plus ``extra_tokens``). Memory is bounded by one chunk and one batch, whatever the number of
    cells. With ``check``, each chunk passes the raw-count checks as it is read (one pass over
    the data), and a bad chunk is refused before any of its cells is yielded. With ``panel``
    (a ``(19264,)`` boolean mask), only the model's panel genes are tokenised.
    """
    n_obs = X.shape[0]
    with tqdm(total=n_obs, desc=desc, unit="cell", disable=not progress) as bar:
        for start in range(0, n_obs, chunk_size):
            raw = X[start : start + chunk_size]
            if check is not None:
                check.check_chunk(raw, offset=start)
            block = to_csr_matrix(raw)
            lengths = block.getnnz(axis=1)
            order = np.argsort(lengths, kind="stable")
            sizes = token_budget_sizes(lengths[order] + extra_tokens, batch_size, max_tokens)
            for i, j in itertools.pairwise(np.cumsum([0, *sizes])):
                rows = order[i:j]
                cells = tokenize_counts(block[rows], var_to_position, depth=depth, panel=panel)
                yield start + rows, cells
                bar.update(len(rows))
