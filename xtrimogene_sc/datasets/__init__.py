"""Small example datasets (bundled or generated; no downloads)."""

from __future__ import annotations

from ._pbmc import pbmc68k_counts
from ._perturbseq import synthetic_perturbseq
from ._synthetic import synthetic_counts

__all__ = [
    "pbmc68k_counts",
    "synthetic_counts",
    "synthetic_perturbseq",
]
