"""Gene vocabulary, gene alignment and raw-count checks."""

from __future__ import annotations

from ._checks import check_counts, to_csr_matrix
from ._vocab import GeneAlignment, GeneVocab

__all__ = [
    "GeneAlignment",
    "GeneVocab",
    "check_counts",
    "to_csr_matrix",
]
