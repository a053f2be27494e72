"""Choosing the genes a small-data model reads: the data set's highly variable genes."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from xtrimogene_sc._threads import torch_threads_kept
from xtrimogene_sc.data._checks import layer_matrix
from xtrimogene_sc.data._vocab import GeneVocab

if TYPE_CHECKING:
    from anndata import AnnData


@torch_threads_kept()
def highly_variable_genes(
    adata: AnnData,
    n_top_genes: int = 2000,
    *,
    layer: str | None = None,
    gene_symbols_key: str | None = None,
) -> list[str]:
    """Names (``var_names``) of the ``n_top_genes`` most variable genes the model can read.

    Scanpy's standard selection, as in the usual PCA workflow, among the genes in the gene
    vocabulary: counts normalised to 10,000 a cell, ``log1p``, then
    :func:`scanpy.pp.highly_variable_genes` (``flavor="seurat"``) on a private copy; ``adata``
    is not changed. The counts are copied once, so this is meant for data that fits in memory
    (the small-data recipe), not for a corpus. Pass the result as ``input_genes`` to
    :class:`~xtrimogene_sc.XTrimoGene`.

    Parameters
    ----------
    adata
        Cells x genes of raw counts.
    n_top_genes
        How many genes to keep. Every gene is returned when there are no more than this.
    layer
        Layer holding the counts; ``None`` uses ``adata.X``.
    gene_symbols_key
        ``var`` column of gene symbols when ``var_names`` are not symbols.

    Returns
    -------
    The selected names, in ``var_names`` order.
    """
    import anndata as ad
    import scanpy as sc

    if n_top_genes < 1:
        msg = f"n_top_genes must be a positive integer, got {n_top_genes}"
        raise ValueError(msg)
    with warnings.catch_warnings():  # coverage warnings were given when the data was set up
        warnings.simplefilter("ignore", UserWarning)
        alignment = GeneVocab.default().align(adata, gene_symbols_key=gene_symbols_key)
    columns = alignment.matched_columns
    names = [str(adata.var_names[i]) for i in columns]
    if len(names) <= n_top_genes:
        return names
    counts = layer_matrix(adata, layer)
    counts = counts.to_memory() if hasattr(counts, "to_memory") else counts
    X = sp.csr_matrix(counts, dtype=np.float32)[:, columns]
    light = ad.AnnData(X=X)
    light.var_names = names
    sc.pp.normalize_total(light, target_sum=1e4)
    sc.pp.log1p(light)
    sc.pp.highly_variable_genes(light, n_top_genes=n_top_genes, flavor="seurat")
    keep = light.var["highly_variable"].to_numpy()
    return [name for name, selected in zip(names, keep, strict=True) if selected]
