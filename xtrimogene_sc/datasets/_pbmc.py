from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from xtrimogene_sc.data._checks import to_csr_matrix

# The log-normalised values of ``pbmc68k_reduced().raw`` are stored rounded to 3 decimals, so the
# recovered counts can only be checked up to the error this rounding implies (see _storage_bound).
_LOG_HALF_STEP = 5e-4 + 1e-6
_ONE_COUNT_TOL = 0.01


def pbmc68k_counts() -> AnnData:
    """700 PBMCs (scanpy's ``pbmc68k_reduced``) with integer counts recovered from ``.raw``.

    ``scanpy.datasets.pbmc68k_reduced()`` ships inside scanpy (no download). Its ``.raw.X`` holds
    ``log1p`` of normalised values (target sum 10⁴, rounded to 3 decimals). Counts are recovered
    per cell by ``expm1``, dividing by the cell's smallest non-zero value (one count) and rounding,
    the procedure scFoundation used for normalised inputs.

    Returns
    -------
    AnnData
        ``X`` and ``layers["counts"]``: ``float32`` CSR integer counts (700 x 765 gene symbols);
        ``obs`` copied from the source (``bulk_labels``, ``louvain``, ...);
        ``uns["xtg_dataset"]``: name, source and ``max_recovery_error`` (largest distance of a
        recovered value from its integer).

    Raises
    ------
    RuntimeError
        If the recovered values are not integers up to the 3-decimal storage precision, or if a
        cell's smallest value does not correspond to one count.
    """
    import scanpy as sc

    source = sc.datasets.pbmc68k_reduced()
    counts, max_dev, bound_ratio = _recover_counts(source.raw.X)
    if "n_counts" in source.obs:
        _check_one_count(source.raw.X, source.obs["n_counts"].to_numpy(dtype=np.float64))
    adata = AnnData(
        X=counts,
        obs=source.obs.copy(),
        var=pd.DataFrame(index=pd.Index(source.raw.var_names.astype(str), name=None)),
    )
    adata.layers["counts"] = counts.copy()
    adata.uns["xtg_dataset"] = {
        "name": "pbmc68k_reduced",
        "source": "scanpy.datasets.pbmc68k_reduced (.raw recovered to counts)",
        "max_recovery_error": max_dev,
        "max_recovery_error_to_bound": bound_ratio,
    }
    return adata


def _expm1_csr(log_values: object) -> sp.csr_matrix:
    X = sp.csr_matrix(log_values, dtype=np.float64, copy=True)
    X.eliminate_zeros()
    if X.data.size and (not np.isfinite(X.data).all() or X.data.min() < 0):
        msg = "Expected non-negative, finite log1p-normalised values in pbmc68k_reduced().raw."
        raise RuntimeError(msg)
    X.data = np.expm1(X.data)
    return X


def _row_min(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Smallest stored value per row and the row index of every stored entry."""
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    row_min = np.full(X.shape[0], np.inf)
    np.minimum.at(row_min, rows, X.data)
    return row_min, rows


def _storage_bound(counts: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Largest |recovered - true count| that 3-decimal rounding of the log values can cause.

    With stored ``x = log1p(c * s) + d`` and ``|d| <= h`` the entry itself is off by at most
    ``(c + 1/s) * expm1(h)`` and the per-cell scale ``s`` (from the smallest entry) adds
    ``c * (1 + 1/s) * expm1(h)``.
    """
    step = np.expm1(_LOG_HALF_STEP)
    return step * (counts + 1.0 / scale + counts * (1.0 + 1.0 / scale)) + 1e-6


def _recover_counts(log_values: object) -> tuple[sp.csr_matrix, float, float]:
    X = _expm1_csr(log_values)
    row_min, rows = _row_min(X)
    scaled = X.data / row_min[rows]
    rounded = np.round(scaled)
    deviation = np.abs(scaled - rounded)
    max_dev = float(deviation.max(initial=0.0))
    ratio = deviation / _storage_bound(rounded, row_min[rows])
    bound_ratio = float(ratio.max(initial=0.0))
    if bound_ratio > 1.0 or max_dev >= 0.5:
        msg = (
            f"Count recovery from pbmc68k_reduced().raw is not exact: max deviation from an integer "
            f"is {max_dev:.4g}, {bound_ratio:.3g} times what 3-decimal storage of the log values "
            "explains."
        )
        raise RuntimeError(msg)
    X.data = rounded
    return to_csr_matrix(X), max_dev, bound_ratio


def _check_one_count(log_values: object, n_counts: np.ndarray) -> None:
    """Check that each cell's smallest value is one count: ``min * n_counts`` is the same target sum."""
    row_min, _ = _row_min(_expm1_csr(log_values))
    target = row_min * n_counts
    relative = np.abs(target / np.median(target) - 1.0)
    bad = np.flatnonzero(relative > _ONE_COUNT_TOL)
    if bad.size:
        msg = (
            f"For {bad.size} cells (e.g. {bad[:5].tolist()}) the smallest non-zero value of "
            "pbmc68k_reduced().raw does not correspond to one count (inconsistent with obs['n_counts'])."
        )
        raise RuntimeError(msg)
