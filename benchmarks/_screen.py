"""The real CRISPR screen's protocols for ``bench_perturbation.py``: unseen targets, held-out replicate.

A screen (one target gene a cell, a replicate column) is scored two ways, every method on the
same cells:

* **unseen targets**: the targets are split into groups; each fold holds one group out (all of
  its cells) and predicts it from the control cells. Targets that are among the measured genes
  and those that are not are reported apart, since only a measured target can show its own
  knockout and give the linear baseline a row of its PCA.
* **seen targets, held-out replicate**: train on the other replicates, predict every target in
  the held-out one from its own control cells.

Besides the usual scores, the knocked-out gene's own change (its mean log-normalised change in
the perturbed cells) is compared, observed against predicted, for the measured targets.
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np

import xtrimogene_sc as xtg
from xtrimogene_sc.perturbation._metrics import paired_changes
from xtrimogene_sc.perturbation._setup import vocabulary_symbol

REPLICATE_KEYS = ("bio_rep", "replicate", "rep", "batch")
UNSEEN_MEASURED = "unseen target, measured"
UNSEEN_UNMEASURED = "unseen target, not measured"
HELD_OUT_REPLICATE = "seen target, held-out replicate"


def replicate_key(adata: ad.AnnData) -> str | None:
    """The ``obs`` column of biological replicates, if there is one with at least two values."""
    return next((k for k in REPLICATE_KEYS if k in adata.obs and adata.obs[k].nunique() > 1), None)


def measured_targets(adata: ad.AnnData, targets: list[str]) -> set[str]:
    """The targets whose gene (by any of its names) is a measured gene of ``adata``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        alignment = xtg.GeneVocab.default().align(adata)
    names = xtg.GeneVocab.default().names
    measured = {str(names[p]) for p in alignment.var_to_position if p >= 0}
    return {t for t in targets if vocabulary_symbol(t) in measured}


def screen_folds(adata: ad.AnnData, seed: int, *, n_groups: int = 4) -> list[dict]:
    """Unseen-target folds (``n_groups`` groups of targets) and one fold per replicate."""
    setup = adata.uns["xtg_perturbation"]
    conditions = adata.obs[setup["condition_key"]].astype(str)
    targets = sorted(set(conditions) - {setup["control"]})
    measured = measured_targets(adata, targets)
    folds = []
    order = np.random.default_rng(seed).permutation(targets)
    for i, group in enumerate(np.array_split(order, n_groups)):
        group = sorted(str(t) for t in group)
        folds.append({
            "fold": f"targets {i + 1}/{n_groups}", "test": set(group), "cell_type": None,
            "categories": {UNSEEN_MEASURED: [t for t in group if t in measured],
                           UNSEEN_UNMEASURED: [t for t in group if t not in measured]},
        })  # fmt: skip
    key = replicate_key(adata)
    for replicate in sorted(adata.obs[key].astype(str).unique()) if key else []:
        folds.append({
            "fold": f"held-out {replicate}", "test": set(targets), "cell_type": None,
            "replicate": (key, replicate), "categories": {HELD_OUT_REPLICATE: targets},
        })  # fmt: skip
    return folds


def split_replicate(adata: ad.AnnData, fold: dict) -> tuple[ad.AnnData, ad.AnnData, ad.AnnData]:
    """Training cells (other replicates), the replicate's controls, and its observed cells."""
    setup = adata.uns["xtg_perturbation"]
    key, replicate = fold["replicate"]
    held = (adata.obs[key].astype(str) == replicate).to_numpy()
    is_control = (adata.obs[setup["condition_key"]].astype(str) == setup["control"]).to_numpy()
    return adata[~held].copy(), adata[held & is_control].copy(), adata[held].copy()


def own_change(prediction: ad.AnnData, observed: ad.AnnData) -> dict[str, float]:
    """Mean change of each measured single target's own gene: observed, predicted, agreement.

    ``own_change_agree`` is the share of targets whose predicted own change has the observed
    sign. Empty (NaN) when no predicted target is a measured gene.
    """
    genes = {str(g): i for i, g in enumerate(prediction.var_names)}
    observed_delta, predicted_delta = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        changes = paired_changes(prediction, observed=observed)
    for change in changes:
        if len(change.condition) == 1 and change.condition[0] in genes:
            i = genes[change.condition[0]]
            observed_delta.append(change.observed[i] - change.control[i])
            predicted_delta.append(change.predicted[i] - change.control[i])
    if not observed_delta:
        return {}
    obs, pred = np.asarray(observed_delta), np.asarray(predicted_delta)
    moved = np.abs(pred) > 1e-4  # a prediction of no change agrees with no sign
    return {
        "own_change_observed": float(obs.mean()),
        "own_change_predicted": float(pred.mean()),
        "own_change_agree": float(((np.sign(obs) == np.sign(pred)) & moved).mean()),
    }
