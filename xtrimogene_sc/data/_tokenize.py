"""Raw-count CSR rows -> :class:`~xtrimogene_sc.module.SparseCells` (no dense cells x genes).

Per cell, with counts ``c`` aligned to the vocabulary and ``N = sum(c)`` over the aligned genes::

    value_g = ln(1 + 1e4 * c_g / N)       S = log10(N)

and the target depth T is chosen explicitly (spec §1.4):

* ``"fold"``: ``T = log10(N * t_value)`` (``t_value=1`` gives T = S),
* ``"absolute"``: ``T = t_value`` (e.g. 4 for a 10,000-count target),
* ``"add_log10"``: ``T = S + t_value``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data._batch import SparseCells

TargetDepthMode = Literal["fold", "absolute", "add_log10"]


@dataclass(frozen=True)
class DepthSpec:
    """How the target read-depth token T relates to the input depth S."""

    mode: TargetDepthMode = "fold"
    value: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ("fold", "absolute", "add_log10"):
            msg = f"t_mode must be 'fold', 'absolute' or 'add_log10', got {self.mode!r}"
            raise ValueError(msg)
        if not np.isfinite(self.value):
            msg = f"t_value must be a finite number, got {self.value}"
            raise ValueError(msg)
        if self.mode == "fold" and self.value <= 0:
            msg = f"t_mode='fold' needs a positive t_value, got {self.value}"
            raise ValueError(msg)

    def target_depth(self, log10_source: np.ndarray) -> np.ndarray:
        """T for each cell given ``S = log10(N)``."""
        if self.mode == "fold":
            return log10_source + np.log10(self.value)
        if self.mode == "absolute":
            return np.full_like(log10_source, self.value)
        return log10_source + self.value


_REFERENCE_CODES = {"t": "absolute", "f": "fold", "a": "add_log10"}


def depth_from_reference_code(code: str) -> DepthSpec:
    """The :class:`DepthSpec` of a reference ``--tgthighres`` code: ``t4``, ``f1``, ``a5`` ...

    ``tX`` is T = X (absolute log10 depth), ``fX`` is T = log10(N * X) and ``aX`` is
    T = log10(N) + X (spec §1.4).
    """
    mode = _REFERENCE_CODES.get(code[:1])
    try:
        value = float(code[1:])
    except ValueError:
        value = None
    if mode is None or value is None:
        msg = f"target-depth code {code!r} is not t<number>, f<number> or a<number> (e.g. t4, f1, a5)"
        raise ValueError(msg)
    return DepthSpec(mode, value)  # type: ignore[arg-type]


def align_rows(counts: sp.csr_matrix, var_to_position: np.ndarray) -> sp.csr_matrix:
    """Map user columns to vocabulary positions; drop unmatched; sum duplicated symbols.

    Returns a ``(n, 19264)`` CSR matrix with sorted, unique column indices per row.
    """
    counts = sp.csr_matrix(counts)
    col_pos = var_to_position[counts.indices]
    keep = col_pos >= 0
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))[keep]
    aligned = sp.coo_matrix(
        (counts.data[keep].astype(np.float64), (rows, col_pos[keep])),
        shape=(counts.shape[0], TOKENS.N_GENES),
    ).tocsr()  # sums duplicates
    aligned.eliminate_zeros()
    aligned.sort_indices()
    return aligned


def normalise(aligned: sp.csr_matrix, *, target_sum: float = 1e4) -> tuple[np.ndarray, np.ndarray]:
    """Log-normalised values of the stored entries and ``log10`` totals of each row."""
    totals = np.asarray(aligned.sum(axis=1)).ravel()
    if np.any(totals <= 0):
        empty = np.flatnonzero(totals <= 0)[:5].tolist()
        msg = (
            f"{int((totals <= 0).sum())} cell(s) have no counts in vocabulary genes (rows {empty} "
            "...); remove them first, e.g. sc.pp.filter_cells(adata, min_counts=1)"
        )
        raise ValueError(msg)
    per_entry_total = np.repeat(totals, np.diff(aligned.indptr))
    values = np.log1p(target_sum * aligned.data / per_entry_total)
    return values.astype(np.float32), np.log10(totals)


def tokenize_counts(
    counts: sp.spmatrix | np.ndarray,
    var_to_position: np.ndarray,
    *,
    depth: DepthSpec | None = None,
    target_counts: sp.spmatrix | np.ndarray | None = None,
    panel: np.ndarray | None = None,
) -> SparseCells:
    """Turn a chunk of raw counts (cells x user genes) into a model minibatch.

    Parameters
    ----------
    counts
        Raw counts of the cells fed to the model, any scipy sparse or dense 2-D array.
    var_to_position
        Vocabulary position of every user column (-1 if not in the vocabulary).
    depth
        Target-depth semantics for T (default: T = S).
    target_counts
        Optional full-depth counts regressed instead of ``counts`` (read-depth-aware pretraining);
        T is then ``log10`` of the target total.
    panel
        Optional ``(19264,)`` boolean mask of the genes the model reads (its gene panel): only
        those entries are emitted. The depth ``N`` and the values still count every gene.
    """
    depth = depth or DepthSpec()
    aligned = align_rows(sp.csr_matrix(counts), var_to_position)
    values, log10_total = normalise(aligned)
    target = None
    depth_t = depth.target_depth(log10_total)
    if target_counts is not None:
        target_aligned = align_rows(sp.csr_matrix(target_counts), var_to_position)
        target_values, target_log10 = normalise(target_aligned)
        target_aligned, target_values = _panel_entries(target_aligned, target_values, panel)
        target = _to_cells(target_aligned, target_values, target_log10, target_log10)
        depth_t = target_log10
    aligned, values = _panel_entries(aligned, values, panel)
    cells = _to_cells(aligned, values, depth_t, log10_total)
    cells.target = target
    return cells


def panel_mask(positions: Sequence[int] | None) -> np.ndarray | None:
    """``(19264,)`` boolean mask of a gene panel's vocabulary positions (``None``: every gene)."""
    if positions is None:
        return None
    mask = np.zeros(TOKENS.N_GENES, dtype=bool)
    mask[np.asarray(positions, dtype=np.int64)] = True
    return mask


def _panel_entries(
    aligned: sp.csr_matrix, values: np.ndarray, panel: np.ndarray | None
) -> tuple[sp.csr_matrix, np.ndarray]:
    """The entries of ``aligned`` (and their ``values``) at ``panel`` genes only."""
    if panel is None:
        return aligned, values
    keep = panel[aligned.indices]
    rows = np.repeat(np.arange(aligned.shape[0]), np.diff(aligned.indptr))[keep]
    indptr = np.zeros(aligned.shape[0] + 1, dtype=aligned.indptr.dtype)
    np.cumsum(np.bincount(rows, minlength=aligned.shape[0]), out=indptr[1:])
    kept = sp.csr_matrix((aligned.data[keep], aligned.indices[keep], indptr), shape=aligned.shape)
    return kept, values[keep]


def _to_cells(
    aligned: sp.csr_matrix, values: np.ndarray, depth_t: np.ndarray, depth_s: np.ndarray
) -> SparseCells:
    return SparseCells(
        crow=torch.from_numpy(aligned.indptr.astype(np.int64)),
        pos=torch.from_numpy(aligned.indices.astype(np.int64)),
        value=torch.from_numpy(values),
        depth_t=torch.from_numpy(np.asarray(depth_t, dtype=np.float32)),
        depth_s=torch.from_numpy(np.asarray(depth_s, dtype=np.float32)),
    )
