"""``pp.check_input``: will this AnnData work with xTrimoGene? Report, and refuse clearly."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from xtrimogene_sc._constants import DEFAULT_KEYS
from xtrimogene_sc.data._counts import read_counts

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)


def check_input(
    adata: AnnData,
    *,
    layer: str | None = None,
    gene_symbols_key: str | None = None,
    min_gene_overlap: float = 0.25,
    key_added: str = "xtg_total_counts",
    copy: bool = False,
) -> AnnData | None:
    """Check raw counts and gene symbols against the model's 19,264-gene vocabulary.

    Runs the same checks as :meth:`~xtrimogene_sc.XTrimoGene.setup_anndata` without registering
    anything, so problems surface before any training.

    Parameters
    ----------
    adata
        Cells x genes, in memory or backed.
    layer
        Layer with raw counts; ``None`` checks ``adata.X``.
    gene_symbols_key
        ``var`` column with HGNC symbols when ``var_names`` are not symbols.
    min_gene_overlap
        Refuse data where fewer than this fraction of its genes are in the vocabulary.
    key_added
        ``obs`` column receiving each cell's total count over vocabulary genes.
    copy
        Return a copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``, with

    ``adata.obs[key_added]``
        Total counts over vocabulary genes (the ``N`` used for normalisation).
    ``adata.uns["xtg"]["alignment"]``
        Overlap figures: matched genes, vocabulary coverage, duplicated symbols summed.

    Raises
    ------
    ValueError
        Non-count values, empty cells, Ensembl IDs without ``gene_symbols_key``, or too little
        overlap; each message says what to do.
    """
    adata = adata.copy() if copy else adata
    counts = read_counts(
        adata, layer=layer, gene_symbols_key=gene_symbols_key, min_overlap=min_gene_overlap
    )
    adata.obs[key_added] = counts.checked()
    uns = adata.uns.setdefault(DEFAULT_KEYS.UNS, {})
    uns["alignment"] = counts.record()
    uns["params"] = {"layer": layer, "gene_symbols_key": gene_symbols_key}
    logger.info("xtrimogene_sc: %s", counts.alignment.summary(counts.count_share()))
    return adata if copy else None
