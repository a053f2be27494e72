"""The record of how a data set's genes map onto the vocabulary (:class:`GeneAlignment`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xtrimogene_sc.data._synonyms import RULES, rule_code

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
    match_rule
        ``int8`` array of length ``n_vars``: the rule that matched each column (0: none; then
        ``exact``, ``case``, ``ensembl``, ``synonym`` as 1-4, see ``data._synonyms.RULES``).
    examples
        A few ``"name->symbol"`` examples of each rule other than ``exact``.
    """

    var_to_position: np.ndarray
    n_vars: int
    n_matched_vars: int
    n_matched_positions: int
    n_duplicated_vars: int
    observed_positions: np.ndarray
    match_rule: np.ndarray | None = None
    examples: dict[str, list[str]] = field(default_factory=dict)

    def rule_counts(self) -> dict[str, int]:
        """How many columns each matching rule matched (``exact``, ``case``, ...)."""
        if self.match_rule is None:
            return {"exact": int(self.n_matched_vars)}
        counts = np.bincount(self.match_rule, minlength=len(RULES) + 1)
        return {rule: int(counts[rule_code(rule)]) for rule in RULES}

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

    def summary(self, count_share: dict[str, float] | None = None) -> str:
        """One-line description: overlap, duplicates, and what each matching rule matched.

        ``count_share`` (share of all counts by rule, see ``data.read_counts``) adds the counts
        each rule brought in.
        """
        rules = []
        for rule, n in self.rule_counts().items():
            if rule == "exact" or not n:
                continue
            share = "" if count_share is None else f", {count_share.get(rule, 0.0):.1%} of counts"
            rules.append(
                f"{n:,} by {rule} (e.g. {', '.join(self.examples.get(rule, [])[:3])}{share})"
            )
        by_rule = f"; matched by other names: {'; '.join(rules)}" if rules else ""
        return (
            f"matched {self.n_matched_vars:,} of {self.n_vars:,} genes ({self.coverage_user:.1%}); "
            f"{self.n_matched_positions:,} of {len(self.observed_positions):,} vocabulary genes "
            f"measured ({self.coverage_vocab:.1%}); "
            f"{self.n_duplicated_vars:,} duplicated symbols summed{by_rule}"
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

    def to_dict(self) -> dict[str, object]:
        """JSON-able scalar summary, suitable for ``adata.uns``."""
        return {
            "n_vars": int(self.n_vars),
            "n_matched_vars": int(self.n_matched_vars),
            "n_matched_positions": int(self.n_matched_positions),
            "n_duplicated_vars": int(self.n_duplicated_vars),
            "n_vocab": len(self.observed_positions),
            "coverage_user": float(self.coverage_user),
            "coverage_vocab": float(self.coverage_vocab),
            "n_matched_by_rule": self.rule_counts(),
            "examples": {rule: list(names) for rule, names in self.examples.items()},
        }
