"""Cells on their way into the model.

Gene vocabulary and alignment, raw-count checks, tokenisation into :class:`SparseCells`
minibatches, and streamed batch iteration. Names load on first use (PEP 562), so the torch
layers that need only :class:`SparseCells` do not import anndata and pandas with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xtrimogene_sc._lazy import lazy_names

if TYPE_CHECKING:
    from ._alignment import GeneAlignment
    from ._batch import SparseCells
    from ._checks import check_counts, to_csr_matrix
    from ._counts import Counts, read_counts
    from ._iterate import iter_batches
    from ._loading import LengthBucketBatchSampler, length_bucket, token_budget_sizes
    from ._tokenize import DepthSpec, tokenize_counts
    from ._vocab import GeneVocab

_EXPORTS = {
    "DepthSpec": "_tokenize",
    "GeneAlignment": "_alignment",
    "GeneVocab": "_vocab",
    "LengthBucketBatchSampler": "_loading",
    "SparseCells": "_batch",
    "check_counts": "_checks",
    "iter_batches": "_iterate",
    "read_counts": "_counts",
    "Counts": "_counts",
    "length_bucket": "_loading",
    "to_csr_matrix": "_checks",
    "token_budget_sizes": "_loading",
    "tokenize_counts": "_tokenize",
}
__all__ = [
    "Counts",
    "DepthSpec",
    "GeneAlignment",
    "GeneVocab",
    "LengthBucketBatchSampler",
    "SparseCells",
    "check_counts",
    "iter_batches",
    "length_bucket",
    "read_counts",
    "to_csr_matrix",
    "token_budget_sizes",
    "tokenize_counts",
]


__getattr__, __dir__ = lazy_names(
    __name__, {name: f"{__name__}.{module}" for name, module in _EXPORTS.items()}
)
