"""The one way every model finds a data set's counts: genes aligned, layer chosen, checks ready.

``XTrimoGene.setup_anndata``, :func:`xtrimogene_sc.pp.check_input`, embedding, the classifier
and the perturbation models all call :func:`read_counts`, so a layer that does not exist, genes
that do not match the vocabulary and values that are not counts get the same answer everywhere.
The checks are returned, not run: a caller that reads the cells once takes them from
:meth:`Counts.batches`, which checks each chunk as it reads it; one that needs the totals first
runs :meth:`Counts.checked`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from xtrimogene_sc.data._alignment import GeneAlignment
from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.data._checks import CountCheck, layer_matrix
from xtrimogene_sc.data._iterate import iter_batches
from xtrimogene_sc.data._synonyms import RULES
from xtrimogene_sc.data._tokenize import panel_mask
from xtrimogene_sc.data._vocab import GeneVocab

if TYPE_CHECKING:
    from anndata import AnnData


@dataclass
class Counts:
    """A data set's count matrix, its gene alignment, and the count checks to run on it."""

    X: Any
    alignment: GeneAlignment
    check: CountCheck
    panel: Sequence[int] | None = None  # the vocabulary positions a model reads

    @property
    def var_to_position(self) -> np.ndarray:
        """Vocabulary position of every column (-1 where the gene is not in the vocabulary)."""
        return self.alignment.var_to_position

    def batches(self, **kwargs: Any) -> Iterator[tuple[np.ndarray, SparseCells]]:
        """``(rows, minibatch)`` over every cell, each chunk checked as it is read.

        Only the panel's genes are tokenised; ``kwargs`` go to :func:`iter_batches`.
        """
        return iter_batches(
            self.X, self.var_to_position, check=self.check, panel=panel_mask(self.panel), **kwargs
        )

    def checked(self) -> np.ndarray:
        """Run the checks over every cell now; per-cell totals over the vocabulary genes."""
        return self.check.check_all(self.X)

    def count_share(self) -> dict[str, float]:
        """Share of all counts read so far in the genes each matching rule matched.

        ``unmatched`` is the share of counts in columns outside the vocabulary.
        """
        totals = self.check.group_totals
        total = float(totals.sum()) or 1.0
        names = ("unmatched", *RULES)
        return {
            n: float(totals[i]) / total if i < len(totals) else 0.0 for i, n in enumerate(names)
        }

    def record(self) -> dict[str, object]:
        """The alignment record for ``adata.uns``, with the count shares once checked."""
        return {**self.alignment.to_dict(), "count_share": self.count_share()}


def read_counts(
    adata: AnnData,
    *,
    layer: str | None = None,
    gene_symbols_key: str | None = None,
    alignment: GeneAlignment | None = None,
    min_overlap: float = 0.25,
    panel: Sequence[int] | None = None,
    require_integer: bool = True,
) -> Counts:
    """Align the genes of ``adata``, take ``X`` or ``layer``, and prepare the count checks.

    Parameters
    ----------
    adata
        In memory or ``backed="r"``.
    layer
        Layer with the counts; ``None`` for ``adata.X``.
    gene_symbols_key
        ``var`` column of symbols when ``var_names`` are not.
    alignment
        An alignment already made (e.g. kept by a model); otherwise one is made here.
    min_overlap
        Smallest share of the data's genes that must be vocabulary genes.
    panel
        Vocabulary positions a model reads; no cell may be empty in them.
    require_integer
        ``False`` accepts non-integer values (bulk profiles), never negative or NaN ones.

    Raises
    ------
    ValueError
        The layer does not exist, too few genes match, or (when the checks run) the values are
        not counts; each message says what to do.
    """
    if alignment is None:
        alignment = GeneVocab.default().align(
            adata, gene_symbols_key=gene_symbols_key, min_overlap=min_overlap
        )
    X = layer_matrix(adata, layer)
    check = CountCheck(
        X, alignment=alignment, layer=layer, panel=panel, require_integer=require_integer,
        groups=alignment.match_rule,
    )  # fmt: skip
    return Counts(X, alignment, check, panel)
