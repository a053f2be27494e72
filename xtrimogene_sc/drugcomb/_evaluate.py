"""Metrics of synergy predictions and cross-validation over the leakage-checked splits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy.stats import pearsonr
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

from xtrimogene_sc.drugcomb._data import COLUMNS
from xtrimogene_sc.drugcomb._splits import Fold, SplitKind, check_split, make_folds, n_groups

CLASSIFICATION_METRICS = ("auroc", "auprc", "balanced_accuracy")
REGRESSION_METRICS = ("pearson_r",)


class SynergyPredictor(Protocol):
    """What :func:`cross_validate` needs of a model."""

    task: str

    def train(
        self, combinations: pd.DataFrame, *, validation: pd.DataFrame | None, seed: int
    ) -> None: ...

    def predict(self, combinations: pd.DataFrame) -> np.ndarray: ...


def synergy_metrics(
    combinations: pd.DataFrame, predictions: np.ndarray, *, task: str
) -> dict[str, float]:
    """AUROC, AUPRC and balanced accuracy (at 0.5), or the Pearson r of the Loewe score.

    Parameters
    ----------
    combinations
        Rows with ``label`` (classification; NaN rows are skipped) or ``synergy_loewe``.
    predictions
        Probabilities of synergy or predicted scores, one per row.
    task
        ``"classification"`` or ``"regression"``.

    Returns
    -------
    Metric name -> value (NaN when the rows hold a single class).
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    if len(predictions) != len(combinations):
        msg = f"{len(predictions)} predictions for {len(combinations)} rows"
        raise ValueError(msg)
    if task == "regression":
        score = combinations[COLUMNS.SCORE].to_numpy(dtype=np.float64)
        ok = np.isfinite(score)
        r = pearsonr(score[ok], predictions[ok]).statistic if ok.sum() > 2 else np.nan
        return {"pearson_r": float(r), "n_scored": int(ok.sum())}
    label = combinations[COLUMNS.LABEL].to_numpy(dtype=np.float64)
    ok = np.isfinite(label)
    y, p = label[ok].astype(int), predictions[ok]
    if len(np.unique(y)) < 2:
        return {**dict.fromkeys(CLASSIFICATION_METRICS, np.nan), "n_labelled": int(ok.sum())}
    return {
        "auroc": float(roc_auc_score(y, p)),
        "auprc": float(average_precision_score(y, p)),
        "balanced_accuracy": float(balanced_accuracy_score(y, p > 0.5)),
        "n_labelled": int(ok.sum()),
    }


def cross_validate(
    make_model: Callable[[], SynergyPredictor],
    combinations: pd.DataFrame,
    *,
    split: SplitKind,
    n_folds: int = 5,
    seed: int = 0,
    folds: list[Fold] | None = None,
    validation_folds: int = 8,
    train_kwargs: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Train a fresh model per fold and score it on the held-out rows.

    Every fold is checked with :func:`~xtrimogene_sc.drugcomb.check_split` (a leaking split is
    refused). Early stopping uses an inner split of the training rows of the same kind (one of
    ``validation_folds`` folds), so a leave-cell-line-out model is stopped on unseen cell lines.

    Parameters
    ----------
    make_model
        Returns an untrained model with ``task``, ``train(frame, validation=, seed=)`` and
        ``predict(frame)``.
    combinations
        All rows.
    split
        ``"random"``, ``"drug_pair"``, ``"cell_line"`` or ``"drug"``.
    n_folds
        Folds to build when ``folds`` is not given.
    seed
        Seed of the folds and of training.
    folds
        Your own ``(train, test)`` row positions; they are checked against ``split``.
    validation_folds
        The inner validation split holds out one fold in this many (fewer when the training
        rows have fewer cell lines, drugs or pairs).
    train_kwargs
        More arguments of the model's ``train`` (e.g. ``max_epochs``).

    Returns
    -------
    One row per fold: ``fold``, ``n_train``, ``n_test``, the metrics of the model's task and
    ``seconds`` (training and prediction).
    """
    folds = (
        folds if folds is not None else make_folds(combinations, split, n_folds=n_folds, seed=seed)
    )
    records: list[dict[str, Any]] = []
    for k, (train, test) in enumerate(folds):
        check_split(combinations, train, test, kind=split)
        train_frame = combinations.iloc[train]
        n_inner = max(2, min(validation_folds, n_groups(train_frame, split)))
        inner_fit, inner_val = make_folds(train_frame, split, n_folds=n_inner, seed=seed + k)[0]
        start = time.perf_counter()
        model = make_model()
        model.train(
            train_frame.iloc[inner_fit],
            validation=train_frame.iloc[inner_val],
            seed=seed + k,
            **(train_kwargs or {}),
        )
        test_frame = combinations.iloc[test]
        predictions = model.predict(test_frame)
        seconds = time.perf_counter() - start
        metrics = synergy_metrics(test_frame, predictions, task=model.task)
        records.append(
            {"fold": k, "n_train": len(train), "n_test": len(test), **metrics, "seconds": seconds}
        )
    return pd.DataFrame.from_records(records)
