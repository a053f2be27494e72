"""The record of how a data set's genes map onto the vocabulary (:class:`GeneAlignment`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_N_EXAMPLES = 5


@dataclass(frozen=True, eq=False)
class GeneAlignment:
    """Mapping of a dataset's genes (columns) onto the fixed gene vocabulary.

    Attributes
    ----------
    var_to_position
        ``int64`` array of length ``n_vars``: vocabulary position of each user column, ``-1`` if unmatched.
    n_vars
        Number of user columns.
    n_matched_vars
        Number of user columns that matched a vocabulary gene.
    n_matched_positions
        Number of distinct vocabulary genes matched.
    n_duplicated_vars
        User columns mapping to a position already used by another column (summed downstream).
    observed_positions
        Boolean array over the vocabulary: which genes were measured. All others are zero-filled.
    """

    var_to_position: np.ndarray
    n_vars: int
    n_matched_vars: int
    n_matched_positions: int
    n_duplicated_vars: int
    observed_positions: np.ndarray

    @property
    def coverage_vocab(self) -> float:
        """Fraction of vocabulary genes that were measured."""
        return self.n_matched_positions / max(len(self.observed_positions), 1)

    @property
    def coverage_user(self) -> float:
        """Fraction of user columns that matched the vocabulary."""
        return self.n_matched_vars / max(self.n_vars, 1)

    @property
    def matched_columns(self) -> np.ndarray:
        """Indices of user columns with a vocabulary position."""
        return np.flatnonzero(self.var_to_position >= 0)

    def summary(self) -> str:
        """One-line human-readable description of the alignment."""
        return (
            f"matched {self.n_matched_vars:,} of {self.n_vars:,} genes ({self.coverage_user:.1%}); "
            f"{self.n_matched_positions:,} of {len(self.observed_positions):,} vocabulary genes "
            f"measured ({self.coverage_vocab:.1%}); "
            f"{self.n_duplicated_vars:,} duplicated symbols summed"
        )

    def positions_of(self, var_names: Sequence[str], genes: Sequence[str]) -> tuple[int, ...]:
        """Sorted vocabulary positions of ``genes``, named as in ``var_names`` (the columns).

        Raises
        ------
        ValueError
            A name that is not a column, or a column outside the vocabulary; the message lists
            a few of them.
        """
        column = {str(name): i for i, name in enumerate(var_names)}
        names = [str(g) for g in genes]
        missing = [g for g in names if g not in column]
        if missing:
            msg = (
                f"{len(missing):,} of the {len(names):,} genes are not columns of the AnnData "
                f"(e.g. {missing[:_N_EXAMPLES]}); name genes as in adata.var_names"
            )
            raise ValueError(msg)
        positions = self.var_to_position[[column[g] for g in names]]
        outside = [g for g, p in zip(names, positions, strict=True) if p < 0]
        if outside:
            msg = (
                f"{len(outside):,} of the {len(names):,} genes are not in the gene vocabulary "
                f"(e.g. {outside[:_N_EXAMPLES]}); leave them out"
            )
            raise ValueError(msg)
        if not names:
            msg = "the gene panel is empty: name at least one gene"
            raise ValueError(msg)
        return tuple(int(p) for p in np.unique(positions))

    def to_dict(self) -> dict[str, int | float]:
        """JSON-able scalar summary, suitable for ``adata.uns``."""
        return {
            "n_vars": int(self.n_vars),
            "n_matched_vars": int(self.n_matched_vars),
            "n_matched_positions": int(self.n_matched_positions),
            "n_duplicated_vars": int(self.n_duplicated_vars),
            "n_vocab": len(self.observed_positions),
            "coverage_user": float(self.coverage_user),
            "coverage_vocab": float(self.coverage_vocab),
        }
