from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._vocab import GeneAlignment

_INT_TOL = 1e-4
_N_EXAMPLES = 5


def to_csr_matrix(X: Any) -> sp.csr_matrix:
    """Convert a scipy sparse matrix/array or dense chunk to a ``float32`` :class:`scipy.sparse.csr_matrix`.

    Parameters
    ----------
    X
        Any scipy sparse matrix or array (CSR, CSC, COO, ...), a numpy array or an array-like.

    Returns
    -------
    scipy.sparse.csr_matrix
        ``X`` itself when it already is a ``float32`` ``csr_matrix``, otherwise a converted copy.
    """
    if isinstance(X, sp.csr_matrix) and X.dtype == np.float32:
        return X
    if sp.issparse(X):
        return sp.csr_matrix(X.tocsr().astype(np.float32, copy=False))
    return sp.csr_matrix(np.asarray(X, dtype=np.float32))


@dataclass
class _Tally:
    """Running counts of invalid entries over row chunks."""

    n_nonfinite: int = 0
    n_negative: int = 0
    n_nonint: int = 0
    min_value: float = np.inf
    max_value: float = -np.inf
    example: dict[str, float] = field(default_factory=dict)

    def update(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        if np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_:
            self.n_negative += self._count("negative", values, values < 0)
        else:
            finite = np.isfinite(values)
            self.n_nonfinite += self._count("nonfinite", values, ~finite)
            values = values[finite]
            self.n_negative += self._count("negative", values, values < 0)
            nonint = np.abs(values - np.round(values)) > _INT_TOL
            self.n_nonint += self._count("nonint", values, nonint)
        if values.size:
            self.min_value = min(self.min_value, float(values.min()))
            self.max_value = max(self.max_value, float(values.max()))

    def _count(self, kind: str, values: np.ndarray, mask: np.ndarray) -> int:
        n = int(np.count_nonzero(mask))
        if n and kind not in self.example:
            self.example[kind] = float(values[mask][0])
        return n


def layer_matrix(adata: Any, layer: str | None) -> Any:
    """``adata.X`` or ``adata.layers[layer]``, with an error that lists the layers that exist.

    Raises
    ------
    ValueError
        ``layer`` is not a layer of ``adata``, or ``adata.X`` is ``None``.
    """
    if layer is None:
        if adata.X is None:
            layers = list(adata.layers)
            fix = f"pass layer= with one of its layers {layers}" if layers else "it has no layers"
            msg = f"adata.X is None (this AnnData holds no matrix in X); {fix}"
            raise ValueError(msg)
        return adata.X
    if layer not in adata.layers:
        msg = (
            f"layer={layer!r} is not a layer of this AnnData (layers: {list(adata.layers)}); pass "
            "one of them, or layer=None for adata.X"
        )
        raise ValueError(msg)
    return adata.layers[layer]


def _refuse_unsupported(X: Any, source: str) -> None:
    """Refuse matrix types that cannot be read in row chunks here (dask arrays)."""
    if type(X).__module__.split(".")[0] == "dask":
        msg = (
            f"{source} is a dask array; xtrimogene_sc reads in-memory (numpy, scipy sparse) or "
            "backed matrices. Load it first, e.g. adata.X = adata.X.compute(), or open the file "
            "with anndata.read_h5ad(path, backed='r') to stream it from disk"
        )
        raise ValueError(msg)


def _source_name(layer: str | None) -> str:
    return "adata.X" if layer is None else f"adata.layers[{layer!r}]"


def _row_chunks(X: Any, chunk_size: int):
    """Yield row chunks of ``X`` as scipy sparse CSR or dense numpy arrays (never the whole matrix)."""
    if sp.issparse(X) and X.format != "csr":
        X = X.tocsr()
    n_obs = X.shape[0]
    for start in range(0, n_obs, chunk_size):
        chunk = X[start : min(start + chunk_size, n_obs)]
        if sp.issparse(chunk):
            yield chunk.tocsr()
        else:
            yield np.asarray(chunk)


def check_counts(
    X: Any,
    *,
    alignment: GeneAlignment,
    layer: str | None,
    chunk_size: int = 4096,
    allow_empty: bool = False,
    require_integer: bool = True,
    panel: Sequence[int] | None = None,
) -> np.ndarray:
    """Validate that a matrix holds raw counts and return per-cell totals over matched genes.

    The matrix is read in row chunks, so backed (on-disk) AnnData matrices are never loaded whole.

    Parameters
    ----------
    X
        Cells x genes matrix: numpy array, any scipy sparse matrix/array, an anndata backed sparse
        dataset (``adata.X`` of an h5ad opened with ``backed="r"``) or an h5py dataset.
    alignment
        Gene alignment of the columns of ``X`` (see :meth:`GeneVocab.align`).
    layer
        Where ``X`` came from (``None`` for ``adata.X``); used in error messages only.
    chunk_size
        Number of rows processed at a time.
    allow_empty
        If ``True``, cells with zero counts over the matched genes are allowed.
    require_integer
        If ``False``, non-integer values are accepted (bulk profiles in TPM or FPKM); NaN,
        infinite and negative values are still refused.
    panel
        Vocabulary positions a model reads (its gene panel); unless ``allow_empty``, cells with
        no counts in those genes are refused too.

    Returns
    -------
    numpy.ndarray
        ``float64`` array of length ``n_obs``: total counts per cell over matched genes only
        (columns mapping to the same vocabulary gene are all included).

    Raises
    ------
    ValueError
        On NaN/inf, negative or non-integer values, a column count that does not match ``alignment``,
        no cells at all, a dask array, or (unless ``allow_empty``) cells without counts over
        matched genes.
    """
    if chunk_size < 1:
        msg = f"chunk_size must be a positive integer, got {chunk_size}."
        raise ValueError(msg)
    check = CountCheck(
        X, alignment=alignment, layer=layer, allow_empty=allow_empty,
        require_integer=require_integer, panel=panel,
    )  # fmt: skip
    return check.check_all(X, chunk_size)


class CountCheck:
    """The raw-count checks of :func:`check_counts`, fed row chunks as a reader reads them.

    An embedding reads each chunk once: :func:`~xtrimogene_sc.data.iter_batches` passes it
    here and then tokenises it, so a file is checked and embedded in one pass, and bad values
    are refused at the first chunk that holds them, before the model runs on it. The checks of
    the matrix's shape run at construction, before anything is read.
    """

    def __init__(
        self,
        X: Any,
        *,
        alignment: GeneAlignment,
        layer: str | None,
        allow_empty: bool = False,
        require_integer: bool = True,
        panel: Sequence[int] | None = None,
        groups: np.ndarray | None = None,
    ) -> None:
        self.source = _source_name(layer)
        _refuse_unsupported(X, self.source)
        shape = tuple(X.shape)
        if len(shape) != 2 or shape[1] != alignment.n_vars:
            msg = (
                f"{self.source} has shape {shape}, but the gene alignment has "
                f"{alignment.n_vars} columns."
            )
            raise ValueError(msg)
        if shape[0] == 0:
            msg = (
                f"{self.source} has no cells (shape {shape}); pass an AnnData with at least one "
                "cell."
            )
            raise ValueError(msg)
        self.alignment = alignment
        self.allow_empty = allow_empty
        self.require_integer = require_integer
        self.n_panel = None if panel is None else len(panel)
        weights = (alignment.var_to_position >= 0).astype(np.float64)
        if panel is not None:  # a second column: counts over the panel genes only
            in_panel = np.isin(alignment.var_to_position, np.asarray(panel, dtype=np.int64))
            weights = np.column_stack([weights, in_panel.astype(np.float64)])
        self.weights = weights
        self.n_sums = weights.ndim
        self.tally = _Tally()
        # counts by column group (e.g. the rule that matched each gene), over every cell read
        self.group_onehot = None
        n_groups = 0 if groups is None else int(np.max(groups, initial=0)) + 1
        if groups is not None:
            self.group_onehot = np.eye(n_groups, dtype=np.float64)[np.asarray(groups)]
        self.group_totals = np.zeros(n_groups)

    def update(self, chunk: Any) -> np.ndarray:
        """Tally the chunk's invalid values; its per-cell totals ``(rows, n_sums)``.

        The totals are left unset (NaN) once a non-finite value has been seen.
        """
        self.tally.update(chunk.data if sp.issparse(chunk) else chunk[chunk != 0])
        if self.group_onehot is not None and not self.tally.n_nonfinite:
            self.group_totals += np.asarray(chunk.sum(axis=0)).ravel() @ self.group_onehot
        if self.tally.n_nonfinite:
            return np.full((chunk.shape[0], self.n_sums), np.nan)
        return np.asarray(chunk @ self.weights, dtype=np.float64).reshape(chunk.shape[0], -1)

    def raise_if_invalid(self) -> None:
        """Refuse NaN, infinite, negative or (for counts) non-integer values seen so far."""
        if not self.require_integer:
            self.tally.n_nonint = 0
        _raise_invalid(self.tally, self.source)

    def raise_if_empty(self, sums: np.ndarray, offset: int = 0) -> None:
        """Refuse cells without counts (rows ``offset...`` of ``sums``), unless allowed."""
        if self.allow_empty:
            return
        _raise_empty(sums[:, 0], self.alignment, self.source, offset)
        if self.n_panel is not None:
            _raise_empty_panel(sums[:, 1], self.n_panel, self.source, offset)

    def check_all(self, X: Any, chunk_size: int = 4096) -> np.ndarray:
        """Check every row of ``X`` in a pass of its own; per-cell totals over matched genes."""
        sums = np.empty((X.shape[0], self.n_sums), dtype=np.float64)
        start = 0
        for chunk in _row_chunks(X, chunk_size):
            stop = start + chunk.shape[0]
            sums[start:stop] = self.update(chunk)
            start = stop
        self.raise_if_invalid()
        self.raise_if_empty(sums)
        return sums[:, 0]

    def check_chunk(self, chunk: Any, offset: int) -> None:
        """All checks on one chunk of rows starting at row ``offset``, raising at once."""
        sums = self.update(chunk)
        self.raise_if_invalid()
        self.raise_if_empty(sums, offset)


def _raise_invalid(tally: _Tally, source: str) -> None:
    fix = (
        'If raw counts are stored elsewhere, pass layer="counts" (or the name of your raw-count '
        "layer) to setup_anndata; otherwise recover raw counts before using the model."
    )
    if tally.n_nonfinite:
        msg = (
            f"{source} contains {tally.n_nonfinite:,} NaN or infinite values "
            f"(e.g. {tally.example['nonfinite']}). xTrimoGene needs finite raw counts. {fix}"
        )
        raise ValueError(msg)
    if tally.n_negative:
        msg = (
            f"{source} contains {tally.n_negative:,} negative values (minimum {tally.min_value:.4g}); "
            f"it looks scaled or batch-corrected. xTrimoGene needs raw (non-negative integer) counts. {fix}"
        )
        raise ValueError(msg)
    if tally.n_nonint:
        looks = " and looks log-normalised" if tally.max_value < 30 else ""
        msg = (
            f"{source} contains {tally.n_nonint:,} non-integer values (e.g. {tally.example['nonint']:.4g})"
            f"{looks}. xTrimoGene needs raw counts. {fix}"
        )
        raise ValueError(msg)


def _raise_empty(
    totals: np.ndarray, alignment: GeneAlignment, source: str, offset: int = 0
) -> None:
    empty = np.flatnonzero(totals <= 0) + offset
    if empty.size == 0:
        return
    first = empty[:_N_EXAMPLES].tolist()
    msg = (
        f"{empty.size:,} cells have zero counts in {source} over the {alignment.n_matched_vars:,} "
        f"genes matched to the vocabulary (first obs indices: {first}). Remove them first, e.g. "
        "with sc.pp.filter_cells(adata, min_counts=1) after subsetting to the matched genes."
    )
    raise ValueError(msg)


def _raise_empty_panel(
    panel_totals: np.ndarray, n_panel: int, source: str, offset: int = 0
) -> None:
    empty = np.flatnonzero(panel_totals <= 0) + offset
    if empty.size == 0:
        return
    msg = (
        f"{empty.size:,} cells have zero counts in {source} over the model's gene panel of "
        f"{n_panel:,} genes (first obs indices: {empty[:_N_EXAMPLES].tolist()}): the model would "
        "see nothing of them. Remove them first, or use a model that reads every gene."
    )
    raise ValueError(msg)
