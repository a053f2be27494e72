"""Gene vocabulary, gene alignment and raw-count checks."""

from __future__ import annotations

from ._checks import check_counts, to_csr_matrix
from ._loading import LengthBucketBatchSampler, length_bucket, token_budget_sizes
from ._vocab import GeneAlignment, GeneVocab

__all__ = [
    "GeneAlignment",
    "GeneVocab",
    "LengthBucketBatchSampler",
    "check_counts",
    "length_bucket",
    "to_csr_matrix",
    "token_budget_sizes",
]
