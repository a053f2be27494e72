"""The O'Neil 2016 combination screen as tidy tables and AnnData objects of cell lines.

The loader reads the files described in the data set's PROVENANCE (``synergy.csv``,
``drugs.csv``, ``cell_lines.csv``, ``cell_line_expression.csv.gz`` and
``cell_line_expression_zscore3384.csv.gz``) from a directory the user names, so a user can point it
at their own copies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import anndata as ad
import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

Scope = Literal["all", "deepdds"]


class _Columns(NamedTuple):
    DRUG_A: str = "drug_a"
    DRUG_B: str = "drug_b"
    CELL_LINE: str = "cell_line"
    SCORE: str = "synergy_loewe"
    LABEL: str = "label"
    FOLD: str = "deepsynergy_fold"
    N_REPLICATES: str = "n_replicates"


COLUMNS = _Columns()
SYNERGY_ABOVE = 10.0  # DeepDDS: Loewe > 10 is synergistic
ANTAGONISM_BELOW = 0.0  # Loewe < 0 is not; 0..10 is left out of classification

_FILES = {
    "synergy": "synergy.csv",
    "drugs": "drugs.csv",
    "cell_lines": "cell_lines.csv",
    "tpm": "cell_line_expression.csv.gz",
    "tpm_genes": "cell_line_expression_genes.csv",
    "zscores": "cell_line_expression_zscore3384.csv.gz",
}


def synergy_labels(
    scores: np.ndarray | pd.Series,
    *,
    synergy_above: float = SYNERGY_ABOVE,
    antagonism_below: float = ANTAGONISM_BELOW,
) -> np.ndarray:
    """Binary synergy labels with an excluded middle (the DeepDDS rule).

    Parameters
    ----------
    scores
        Loewe synergy scores.
    synergy_above
        Scores above this are synergistic (label 1).
    antagonism_below
        Scores below this are not (label 0); scores in between get NaN and are left out of
        classification.

    Returns
    -------
    float array of 1.0, 0.0 and NaN.
    """
    if antagonism_below > synergy_above:
        msg = (
            f"antagonism_below ({antagonism_below}) must not exceed synergy_above "
            f"({synergy_above})"
        )
        raise ValueError(msg)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.full(scores.shape, np.nan)
    labels[scores > synergy_above] = 1.0
    labels[scores < antagonism_below] = 0.0
    return labels


@dataclass
class OneilData:
    """The O'Neil screen: combinations, drug SMILES and cell-line expression.

    Attributes
    ----------
    combinations
        One row per (drug_a, drug_b, cell_line) with ``synergy_loewe``, ``label`` (1/0/NaN),
        ``deepsynergy_fold`` and ``n_replicates`` (or one row per measurement when replicates are
        kept, with a ``replicate`` column).
    smiles
        Drug name -> SMILES, for every drug in ``combinations``.
    cell_lines
        Per cell line: tissue and which expression tables cover it.
    expression
        Cell lines x genes AnnData of TPM (linear scale, one transcript per gene) for the 31 lines
        that have it; the input of :func:`xtrimogene_sc.tl.embed` with ``input_type="bulk"``.
    zscores
        Cell lines x 3,384 genes of per-gene z-scores (PRODeepSyn) for every line; features for
        baselines only, never an input of the foundation model.
    """

    combinations: pd.DataFrame
    smiles: pd.Series
    cell_lines: pd.DataFrame
    expression: ad.AnnData
    zscores: ad.AnnData


def load_oneil(
    data_dir: str | Path,
    *,
    scope: Scope = "all",
    average_replicates: bool = True,
) -> OneilData:
    """Load the O'Neil 2016 synergy screen (DeepSynergy/DeepDDS form) from ``data_dir``.

    Parameters
    ----------
    data_dir
        Directory holding ``synergy.csv``, ``drugs.csv``, ``cell_lines.csv``,
        ``cell_line_expression.csv.gz`` and ``cell_line_expression_zscore3384.csv.gz``.
    scope
        ``"all"``: 38 drugs x 39 cell lines. ``"deepdds"``: DeepDDS's 36 drugs (no carboplatin
        or oxaliplatin) and the 31 cell lines with TPM expression; what is dropped is logged.
    average_replicates
        The screen measured 315 (pair, cell line) triplets twice; ``True`` averages their scores
        before labelling (one row per triplet), ``False`` keeps every measurement (every split in
        :mod:`xtrimogene_sc.drugcomb` keeps replicates on the same side).

    Returns
    -------
    OneilData
        Tables restricted to the drugs and cell lines of ``scope``.
    """
    if scope not in ("all", "deepdds"):
        msg = f"scope must be 'all' or 'deepdds', got {scope!r}"
        raise ValueError(msg)
    root = Path(data_dir)
    missing = [name for name in _FILES.values() if not (root / name).exists()]
    if missing:
        msg = f"{root} lacks {missing}; point data_dir at the O'Neil drug_combination directory"
        raise FileNotFoundError(msg)
    raw = pd.read_csv(root / _FILES["synergy"])
    combinations = _tidy_combinations(raw, average_replicates=average_replicates)
    smiles = pd.read_csv(root / _FILES["drugs"]).set_index("drug")["smiles"]
    cell_lines = pd.read_csv(root / _FILES["cell_lines"]).set_index("cell_line")
    expression = read_cell_line_expression(
        root / _FILES["tpm"], genes_file=root / _FILES["tpm_genes"]
    )
    expression.obs = expression.obs.join(cell_lines[["tissue"]])
    zscores = read_cell_line_zscores(root / _FILES["zscores"])
    if scope == "deepdds":
        keep = raw.groupby(list(COLUMNS[:3]))["in_deepdds_scope"].first()
        in_scope = keep.reindex(pd.MultiIndex.from_frame(combinations[list(COLUMNS[:3])]))
        _log_dropped(combinations, in_scope.to_numpy(dtype=bool))
        combinations = combinations[in_scope.to_numpy(dtype=bool)].reset_index(drop=True)
    drugs = pd.unique(combinations[[COLUMNS.DRUG_A, COLUMNS.DRUG_B]].to_numpy().ravel())
    lines = combinations[COLUMNS.CELL_LINE].unique()
    return OneilData(
        combinations=combinations,
        smiles=smiles.loc[sorted(drugs)],
        cell_lines=cell_lines.loc[sorted(lines)],
        expression=expression[expression.obs_names.isin(lines)].copy(),
        zscores=zscores[zscores.obs_names.isin(lines)].copy(),
    )


def _tidy_combinations(raw: pd.DataFrame, *, average_replicates: bool) -> pd.DataFrame:
    keys = [COLUMNS.DRUG_A, COLUMNS.DRUG_B, COLUMNS.CELL_LINE]
    if average_replicates:
        frame = raw.groupby(keys, as_index=False, sort=False).agg(
            **{
                COLUMNS.SCORE: (COLUMNS.SCORE, "mean"),
                COLUMNS.FOLD: (COLUMNS.FOLD, "first"),
                COLUMNS.N_REPLICATES: (COLUMNS.SCORE, "size"),
            }
        )
    else:
        frame = raw[[*keys, COLUMNS.SCORE, COLUMNS.FOLD, COLUMNS.N_REPLICATES, "replicate"]].copy()
    frame[COLUMNS.LABEL] = synergy_labels(frame[COLUMNS.SCORE])
    return frame


def _log_dropped(combinations: pd.DataFrame, keep: np.ndarray) -> None:
    dropped = combinations[~keep]
    drugs_kept = set(combinations.loc[keep, COLUMNS.DRUG_A]) | set(
        combinations.loc[keep, COLUMNS.DRUG_B]
    )
    drugs_out = sorted((set(dropped[COLUMNS.DRUG_A]) | set(dropped[COLUMNS.DRUG_B])) - drugs_kept)
    lines_out = sorted(
        set(dropped[COLUMNS.CELL_LINE]) - set(combinations.loc[keep, COLUMNS.CELL_LINE])
    )
    logger.warning(
        "DeepDDS scope: dropped %d of %d combinations (drugs %s; cell lines without TPM %s)",
        len(dropped), len(combinations), drugs_out, lines_out,
    )  # fmt: skip


def read_cell_line_expression(
    path: str | Path, *, genes_file: str | Path | None = None
) -> ad.AnnData:
    """Cell lines x genes TPM table (CSV, first column the cell line) as an AnnData.

    Parameters
    ----------
    path
        CSV (optionally gzipped) with a ``cell_line`` column and one column per gene symbol.
    genes_file
        Optional per-gene annotation CSV whose ``column`` field names the table's columns; its
        other fields (Ensembl ids, vocabulary match) go to ``var``.

    Returns
    -------
    AnnData with linear-scale TPM in ``X`` (float32), cell lines as ``obs_names`` and gene symbols
    as ``var_names``.
    """
    table = pd.read_csv(path, index_col=0)
    if (table.to_numpy() < 0).any() or not np.isfinite(table.to_numpy()).all():
        msg = f"{path} holds negative or non-finite values; expected linear-scale TPM"
        raise ValueError(msg)
    adata = ad.AnnData(table.to_numpy(dtype=np.float32))
    adata.obs_names = table.index.astype(str)
    adata.var_names = table.columns.astype(str)
    if genes_file is not None:
        genes = pd.read_csv(genes_file).set_index("column")
        adata.var = adata.var.join(genes)
    adata.uns["expression_unit"] = "TPM (linear scale)"
    return adata


def read_cell_line_zscores(path: str | Path) -> ad.AnnData:
    """Cell lines x genes table of per-gene z-scores (CSV, first column the cell line).

    Parameters
    ----------
    path
        CSV (optionally gzipped) with a ``cell_line`` column and one column per gene.

    Returns
    -------
    AnnData with the z-scores in ``X`` (float32). Z-scores are not counts: use them as features,
    never as input of the foundation model.
    """
    table = pd.read_csv(path, index_col=0)
    adata = ad.AnnData(table.to_numpy(dtype=np.float32))
    adata.obs_names = table.index.astype(str)
    adata.var_names = table.columns.astype(str)
    adata.uns["expression_unit"] = "z-score across cell lines"
    return adata
