"""Scores of predicted perturbation responses against observed ones.

For a condition (in a cell type), with ``ctrl``, ``obs`` and ``pred`` the mean log-normalised
profiles of the observed control cells, the observed perturbed cells and the predicted cells:

* the observed change is ``obs - ctrl`` and the predicted change ``pred - ctrl``;
* the **DE genes** are the ``n_top_de`` genes with the largest absolute observed change (the
  absolute difference of means of perturbed and control cells, in log-normalised space);
* ``pearson_delta``: Pearson correlation of predicted and observed change over all genes;
* ``pearson_delta_de``: the same over the DE genes;
* ``mse_de``: mean squared error of ``pred`` against ``obs`` on the DE genes;
* ``direction_de``: fraction of DE genes whose predicted change has the observed sign (a
  predicted change below 1e-5 counts as none, i.e. as wrong).

A prediction that changes nothing (constant change) has an undefined correlation, reported as
NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from xtrimogene_sc.data._vocab import GeneVocab
from xtrimogene_sc.perturbation._predictor import PREDICTION_KEY
from xtrimogene_sc.perturbation._setup import (
    GeneSpace,
    PerturbationSetup,
    aligned_counts,
    cell_types_of,
    group_means,
)

if TYPE_CHECKING:
    from anndata import AnnData

_CONSTANT = 1e-5  # log-normalised units; float32 rounding of values near 5 is ~5e-7
SCORES = ("pearson_delta", "pearson_delta_de", "mse_de", "direction_de")


def delta_scores(
    predicted: np.ndarray, observed: np.ndarray, control: np.ndarray, *, n_top_de: int = 20
) -> dict[str, float]:
    """Scores of one condition from its mean profiles (see the module notes).

    Parameters
    ----------
    predicted, observed, control
        Mean log-normalised profiles ``(n_genes,)``.
    n_top_de
        Number of DE genes (top absolute observed change).

    Returns
    -------
    ``pearson_delta``, ``pearson_delta_de``, ``mse_de`` and ``direction_de``.
    """
    pred_delta = np.asarray(predicted, np.float64) - control
    obs_delta = np.asarray(observed, np.float64) - control
    pred_delta[np.abs(pred_delta) < _CONSTANT] = 0.0  # float32 rounding is no change
    de = np.argsort(-np.abs(obs_delta), kind="stable")[:n_top_de]
    return {
        "pearson_delta": _pearson(pred_delta, obs_delta),
        "pearson_delta_de": _pearson(pred_delta[de], obs_delta[de]),
        "mse_de": float(np.mean((pred_delta[de] - obs_delta[de]) ** 2)),
        "direction_de": float(np.mean(np.sign(pred_delta[de]) == np.sign(obs_delta[de]))),
    }


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (up to float32 rounding)."""
    if a.std() < _CONSTANT or b.std() < _CONSTANT:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def perturbation_metrics(adata: AnnData, *, observed: AnnData, n_top_de: int = 20) -> pd.DataFrame:
    """Score predicted perturbation responses against observed cells, per condition.

    Parameters
    ----------
    adata
        Predictions from ``predict`` of :class:`~xtrimogene_sc.XTrimoGenePerturbation` or
        :class:`~xtrimogene_sc.model.PerturbationBaseline` (per cell or per-type means).
    observed
        Raw counts of the observed perturbed cells *and* the control cells they are compared
        with, on the genes of the training data, with the same ``obs`` columns as the training
        data (condition, and cell type if the model has one).
    n_top_de
        DE genes per condition: the largest absolute observed changes from control.

    Returns
    -------
    One row per condition (and cell type) present in both: ``condition``, ``cell_type`` (if
    any), ``n_cells`` (observed perturbed cells) and the scores ``pearson_delta``,
    ``pearson_delta_de``, ``mse_de``, ``direction_de``.

    Raises
    ------
    ValueError
        ``adata`` is not a prediction, ``observed`` has other genes or no control cells of a
        scored type, or no predicted condition was observed.
    """
    setup = _prediction_setup(adata)
    rows = [
        {"condition": "+".join(c.condition), "cell_type": c.cell_type, "n_cells": c.n_cells,
         **delta_scores(c.predicted, c.observed, c.control, n_top_de=n_top_de)}
        for c in paired_changes(adata, observed=observed)
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    return table if setup.cell_type_key is not None else table.drop(columns="cell_type")


@dataclass
class Change:
    """Predicted and observed mean profiles of one condition in one cell type."""

    condition: tuple[str, ...]
    cell_type: str
    n_cells: int  # observed perturbed cells
    predicted: np.ndarray
    observed: np.ndarray
    control: np.ndarray  # observed control mean of the type


def paired_changes(adata: AnnData, *, observed: AnnData) -> list[Change]:
    """Mean profiles of every predicted (condition, cell type) that ``observed`` also has."""
    setup = _prediction_setup(adata)
    positions = GeneVocab.default().positions(list(adata.var_names))
    genes = GeneSpace(positions, np.asarray(adata.var_names, dtype=str))
    X, var_to_position = aligned_counts(observed, setup, genes, what="observed")
    obs_keys = _group_keys(observed, setup)
    pred_keys = _group_keys(adata, setup)
    groups = sorted(set(pred_keys))
    observed_means, counts = _means(X, var_to_position, genes, obs_keys, groups)
    predicted_means = _dense_group_means(np.asarray(adata.X), pred_keys, groups)
    control_keys = sorted({((), t) for _, t in groups})
    control_means, control_counts = _means(X, var_to_position, genes, obs_keys, control_keys)
    lacking = [t for (_, t), n in zip(control_keys, control_counts, strict=True) if n == 0]
    if lacking:
        msg = f"observed has no control cells of type(s) {lacking}: changes cannot be measured"
        raise ValueError(msg)
    control_of = dict(zip(control_keys, control_means, strict=True))
    changes = [
        Change(condition, cell_type, int(counts[g]), predicted_means[g], observed_means[g],
               control_of[((), cell_type)])
        for g, (condition, cell_type) in enumerate(groups) if condition and counts[g] > 0
    ]  # fmt: skip
    skipped = [("+".join(c), t) for (c, t), n in zip(groups, counts, strict=True) if c and n == 0]
    if skipped:
        msg = f"{len(skipped)} predicted group(s) have no observed cells and are not scored: {skipped[:5]}"
        warnings.warn(msg, UserWarning, stacklevel=3)
    if not changes:
        msg = "none of the predicted conditions has observed cells in observed"
        raise ValueError(msg)
    return changes


def _prediction_setup(adata: AnnData) -> PerturbationSetup:
    info = adata.uns.get(PREDICTION_KEY, {})
    if "setup" not in info:
        msg = (
            "adata is not a perturbation prediction (uns['xtg_perturbation_prediction'] is "
            "missing); pass the AnnData returned by predict()"
        )
        raise ValueError(msg)
    return PerturbationSetup(**dict(info["setup"]))


def _group_keys(adata: AnnData, setup: PerturbationSetup) -> list[tuple[tuple[str, ...], str]]:
    conditions = adata.obs[setup.condition_key].astype(str)
    types = cell_types_of(adata, setup)
    return [(setup.parse(c), str(t)) for c, t in zip(conditions, types, strict=True)]


def _means(X, var_to_position, genes, keys, groups) -> tuple[np.ndarray, np.ndarray]:
    index = {g: i for i, g in enumerate(groups)}
    codes = np.array([index.get(k, -1) for k in keys], dtype=np.int64)
    return group_means(X, var_to_position, genes, codes, len(groups))


def _dense_group_means(X: np.ndarray, keys, groups) -> np.ndarray:
    index = {g: i for i, g in enumerate(groups)}
    codes = np.array([index[k] for k in keys])
    sums = np.zeros((len(groups), X.shape[1]))
    np.add.at(sums, codes, X)
    return sums / np.bincount(codes, minlength=len(groups))[:, None]
