"""Score embeddings across batches with the scIB metrics (``scib-metrics``, an optional extra)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from xtrimogene_sc._threads import torch_threads_kept

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

INSTALL_HINT = "pip install 'xtrimogene-sc[integration]'"
MIN_CELLS = 91  # scIB's LISI reads 90 neighbours besides the cell itself
AGGREGATES = ("Bio conservation", "Batch correction", "Total")


def score_integration(
    adata: AnnData,
    use_reps: str | Sequence[str],
    *,
    batch_key: str,
    labels_key: str,
    unintegrated_rep: str = "X_pca",
    n_jobs: int = 1,
    progress: bool = False,
) -> pd.DataFrame:
    """Score how well embeddings keep cell types apart and mix batches: the scIB metrics.

    Runs the benchmark of scIB (Luecken et al. 2022) as ``scib-metrics`` implements it, on every
    embedding in ``use_reps`` over the same cells. Bio conservation: isolated labels, k-means NMI
    and ARI, label silhouette and cLISI. Batch correction: BRAS (batch silhouette), iLISI, kBET,
    graph connectivity and the principal-component regression of the batch, relative to
    ``unintegrated_rep``. Every metric lies in [0, 1], higher is better; the totals are unscaled
    means (``Total`` = 0.4 batch + 0.6 bio, scIB's weighting), so they do not depend on which
    other embeddings are scored alongside. Neighbours are exact (scikit-learn), which on up to
    tens of thousands of cells is faster than the approximate search's compilation.

    Parameters
    ----------
    adata
        Cells with every embedding in ``obsm``.
    use_reps
        ``obsm`` keys to score (e.g. ``["X_pca", "X_xtg"]``).
    batch_key
        ``obs`` column of the batch (donor, condition, study...); at least two batches.
    labels_key
        ``obs`` column of the cell types, known for every cell.
    unintegrated_rep
        ``obsm`` key of an embedding before any integration, the reference of the
        principal-component regression: usually ``sc.pp.pca`` of log-normalised counts.
    n_jobs
        Parallel jobs of the neighbour search.
    progress
        Show scib-metrics' progress bars.

    Returns
    -------
    pandas.DataFrame
        One row per embedding (in ``use_reps`` order); one column per metric, then
        ``Bio conservation``, ``Batch correction`` and ``Total``.

    Raises
    ------
    ImportError
        If ``scib-metrics`` is not installed; the message gives the install command.
    KeyError
        If a key is missing from ``adata``.
    ValueError
        If there are fewer than 91 cells or two batches, a label is missing, or an embedding has
        non-finite values or a row count other than the number of cells.
    """
    reps = [use_reps] if isinstance(use_reps, str) else list(use_reps)
    _check_inputs(adata, reps, batch_key, labels_key, unintegrated_rep)
    try:
        from scib_metrics.benchmark import Benchmarker
    except ImportError as error:
        raise ImportError(
            f"score_integration needs the scib-metrics package; install it with: {INSTALL_HINT}"
        ) from error
    scored = _scoring_view(adata, reps, batch_key, labels_key, unintegrated_rep)
    with torch_threads_kept():
        bench = Benchmarker(
            scored,
            batch_key="batch",
            label_key="label",
            embedding_obsm_keys=list(scored.obsm.keys() - {"unintegrated"}),
            pre_integrated_embedding_obsm_key="unintegrated",
            n_jobs=n_jobs,
            progress_bar=progress,
        )
        bench.prepare(neighbor_computer=exact_neighbors)
        bench.benchmark()
        table = bench.get_results(min_max_scale=False)
    table = table.drop(index="Metric Type").astype(float)
    table.index = [reps[int(key)] for key in table.index]
    table.index.name = "embedding"
    return table.loc[reps]


def exact_neighbors(X: np.ndarray, n_neighbors: int):
    """Exact Euclidean nearest neighbours, each cell its own first neighbour, as scib-metrics wants."""
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    search = NearestNeighbors(n_neighbors=n_neighbors).fit(X)
    distances, indices = search.kneighbors(X)
    return NeighborsResults(indices=indices, distances=distances)


def _scoring_view(adata, reps, batch_key, labels_key, unintegrated_rep) -> AnnData:
    """A light AnnData holding only what the benchmark reads, so ``adata`` is never modified.

    The embeddings are keyed by their position: scib-metrics reads metric names out of keys.
    """
    import anndata as ad
    import pandas as pd

    obs = pd.DataFrame(
        {
            "batch": pd.Categorical(adata.obs[batch_key].astype(str)),
            "label": pd.Categorical(adata.obs[labels_key].astype(str)),
        },
        index=adata.obs_names.astype(str),
    )
    view = ad.AnnData(np.zeros((adata.n_obs, 1), dtype=np.float32), obs=obs)
    for position, rep in enumerate(reps):
        view.obsm[str(position)] = np.asarray(adata.obsm[rep], dtype=np.float32)
    view.obsm["unintegrated"] = np.asarray(adata.obsm[unintegrated_rep], dtype=np.float32)
    return view


def _check_inputs(adata, reps, batch_key, labels_key, unintegrated_rep) -> None:
    if adata.n_obs < MIN_CELLS:
        raise ValueError(
            f"The scIB metrics need at least {MIN_CELLS} cells (LISI reads 90 neighbours); "
            f"got {adata.n_obs}."
        )
    if not reps:
        raise ValueError("use_reps is empty: pass the obsm keys of the embeddings to score.")
    if len(set(reps)) != len(reps):
        raise ValueError(f"use_reps names an embedding twice: {reps}.")
    for key in (batch_key, labels_key):
        if key not in adata.obs:
            raise KeyError(f"obs has no column {key!r}; it has {list(adata.obs.columns)}.")
    for rep in [*reps, unintegrated_rep]:
        if rep not in adata.obsm:
            hint = " Run sc.pp.pca on log-normalised counts first." if rep == "X_pca" else ""
            raise KeyError(f"obsm has no {rep!r}; it has {list(adata.obsm.keys())}.{hint}")
        values = np.asarray(adata.obsm[rep])
        if values.ndim != 2 or values.shape[0] != adata.n_obs:
            raise ValueError(f"obsm[{rep!r}] must be cells x dimensions, got {values.shape}.")
        if not np.isfinite(values).all():
            raise ValueError(f"obsm[{rep!r}] has NaN or infinite values; recompute it.")
    if adata.obs[labels_key].isna().any():
        raise ValueError(
            f"obs[{labels_key!r}] is missing for {int(adata.obs[labels_key].isna().sum())} "
            "cells; subset to the labelled cells first."
        )
    if adata.obs[batch_key].astype(str).nunique() < 2:
        raise ValueError(
            f"obs[{batch_key!r}] has a single batch; batch mixing needs at least two."
        )
