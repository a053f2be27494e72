"""Gradient-boosted trees on drug fingerprints and cell features: the baseline to beat.

DeepDDS reports XGBoost close behind its graph network on random splits; scikit-learn's
histogram gradient boosting (LightGBM's algorithm, no extra dependency) plays that role here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from xtrimogene_sc.drugcomb._data import COLUMNS
from xtrimogene_sc.drugcomb._model import Task
from xtrimogene_sc.drugcomb._tables import cell_features, drug_features, lookup

if TYPE_CHECKING:
    from anndata import AnnData


class GradientBoostingSynergy:
    """Histogram gradient boosting on ``[fingerprint A + fingerprint B, cell features]``.

    The two fingerprints enter as their sum (bit counts 0, 1 or 2 per substructure), which
    makes the model order-invariant without doubling the data; fingerprint columns that are
    constant or duplicated over the drug table are dropped.

    Parameters
    ----------
    drugs
        Drug name -> SMILES, or a drugs x features DataFrame (as for
        :class:`~xtrimogene_sc.drugcomb.DrugCombinationModel`).
    cell_lines
        AnnData of cell lines; ``None`` with ``cell_key=None`` for drugs only.
    cell_key
        ``obsm`` key of the cell-line features, or ``None``.
    task
        ``"classification"`` or ``"regression"``.
    radius, n_bits
        Morgan fingerprint settings.
    max_iter, learning_rate, max_leaf_nodes
        Boosting rounds (upper bound; early stopping on the validation rows), shrinkage and tree
        size.
    """

    def __init__(
        self,
        drugs: Mapping[str, str] | pd.Series | pd.DataFrame,
        cell_lines: AnnData | None = None,
        *,
        cell_key: str | None = None,
        task: Task = "classification",
        radius: int = 2,
        n_bits: int = 1024,
        max_iter: int = 500,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
    ) -> None:
        if task not in ("classification", "regression"):
            msg = f"task must be 'classification' or 'regression', got {task!r}"
            raise ValueError(msg)
        drug_table, _ = drug_features(drugs, radius=radius, n_bits=n_bits)
        values = drug_table.to_numpy(np.float32)
        informative = values.std(axis=0) > 0
        _, first = np.unique(values[:, informative], axis=1, return_index=True)
        self.drug_table = values[:, np.flatnonzero(informative)[np.sort(first)]]
        self.drug_names = pd.Index(drug_table.index.astype(str))
        cells = cell_features(cell_lines, cell_key)
        self.cell_key = cell_key
        self.cell_names = pd.Index([] if cells is None else cells.index)
        self.cell_table = None if cells is None else cells.to_numpy(np.float32)
        self.task: Task = task
        self.params = {
            "max_iter": max_iter, "learning_rate": learning_rate,
            "max_leaf_nodes": max_leaf_nodes, "n_iter_no_change": 20,
        }  # fmt: skip
        self.estimator: HistGradientBoostingClassifier | HistGradientBoostingRegressor | None = (
            None
        )

    def _features(self, combinations: pd.DataFrame) -> np.ndarray:
        a = lookup(self.drug_names, combinations[COLUMNS.DRUG_A], "drug")
        b = lookup(self.drug_names, combinations[COLUMNS.DRUG_B], "drug")
        parts = [self.drug_table[a] + self.drug_table[b]]
        if self.cell_table is not None:
            parts.append(
                self.cell_table[
                    lookup(self.cell_names, combinations[COLUMNS.CELL_LINE], "cell line")
                ]
            )
        return np.hstack(parts)

    def _xy(self, combinations: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        column = COLUMNS.LABEL if self.task == "classification" else COLUMNS.SCORE
        y = combinations[column].to_numpy(dtype=np.float64)
        usable = np.isfinite(y)
        return self._features(combinations[usable]), y[usable]

    def train(
        self,
        combinations: pd.DataFrame,
        *,
        validation: pd.DataFrame | None = None,
        seed: int = 0,
    ) -> None:
        """Fit, stopping early on ``validation`` (default: a random tenth of the rows).

        Parameters
        ----------
        combinations
            Rows with the drugs, the cell line and ``label`` or ``synergy_loewe``.
        validation
            Rows for early stopping.
        seed
            Seed of the boosting (and of its own validation split).
        """
        X, y = self._xy(combinations)
        cls = (
            HistGradientBoostingClassifier
            if self.task == "classification"
            else HistGradientBoostingRegressor
        )
        self.estimator = cls(**self.params, early_stopping=True, random_state=seed)
        if validation is None:
            self.estimator.fit(X, y)
            return
        X_val, y_val = self._xy(validation)
        self.estimator.fit(X, y, X_val=X_val, y_val=y_val)

    def predict(self, combinations: pd.DataFrame) -> np.ndarray:
        """Synergy probability (classification) or Loewe score (regression) of each row.

        Parameters
        ----------
        combinations
            Rows with ``drug_a``, ``drug_b`` and ``cell_line``.
        """
        if self.estimator is None:
            msg = "the model is not trained; call train(combinations) first"
            raise RuntimeError(msg)
        X = self._features(combinations)
        if self.task == "classification":
            return self.estimator.predict_proba(X)[:, 1].astype(np.float64)
        return self.estimator.predict(X).astype(np.float64)
