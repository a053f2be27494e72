from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from xtrimogene_sc.drugcomb import GradientBoostingSynergy, cross_validate, synergy_metrics


def _swap(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"drug_a": "drug_b", "drug_b": "drug_a"})


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_boosting_is_order_invariant_and_learns(synthetic, task):
    rows = synthetic["combinations"]
    train, test = rows.iloc[::2], rows.iloc[1::2]
    model = GradientBoostingSynergy(
        synthetic["drugs"], synthetic["cells"], cell_key="X_feat", task=task, max_iter=100
    )
    model.train(train, validation=test.iloc[::2])
    predicted = model.predict(test)
    assert np.array_equal(predicted, model.predict(_swap(test)))
    if task == "classification":
        labelled = test["label"].notna().to_numpy()
        assert roc_auc_score(test["label"][labelled], predicted[labelled]) > 0.75
    else:
        assert np.corrcoef(predicted, test["synergy_loewe"])[0, 1] > 0.5


def test_boosting_drops_uninformative_fingerprint_columns(synthetic):
    drugs = synthetic["drugs"].copy()
    drugs["constant"] = 1.0
    drugs["copy_of_0"] = drugs[0]
    model = GradientBoostingSynergy(drugs, cell_key=None)
    assert model.drug_table.shape[1] <= synthetic["drugs"].shape[1]
    with pytest.raises(RuntimeError, match="not trained"):
        model.predict(synthetic["combinations"])


def test_synergy_metrics_match_their_definitions():
    rows = pd.DataFrame(
        {"label": [1.0, 0.0, np.nan, 1.0, 0.0], "synergy_loewe": [20, -5, 5, 12, -1]}
    )
    proba = np.array([0.9, 0.2, 0.5, 0.4, 0.6])
    metrics = synergy_metrics(rows, proba, task="classification")
    assert metrics["n_labelled"] == 4
    assert metrics["auroc"] == pytest.approx(0.75)
    assert metrics["balanced_accuracy"] == pytest.approx(
        0.5
    )  # 0.9 right, 0.4 wrong; 0.2 right, 0.6 wrong
    regression = synergy_metrics(rows, rows["synergy_loewe"].to_numpy() * 2 + 1, task="regression")
    assert regression["pearson_r"] == pytest.approx(1.0)
    one_class = synergy_metrics(rows.iloc[:1], proba[:1], task="classification")
    assert np.isnan(one_class["auroc"])
    with pytest.raises(ValueError, match="4 predictions for 5 rows"):
        synergy_metrics(rows, proba[:4], task="classification")


def test_cross_validate_reports_every_fold_and_refuses_leaks(synthetic):
    rows = synthetic["combinations"]

    def make():
        return GradientBoostingSynergy(synthetic["drugs"], cell_key=None, max_iter=20)

    table = cross_validate(make, rows, split="cell_line", n_folds=4)
    assert list(table["fold"]) == [0, 1, 2, 3]
    assert {"auroc", "auprc", "balanced_accuracy", "n_train", "n_test", "seconds"} <= set(table)
    assert table["auroc"].between(0, 1).all()
    third = np.arange(len(rows)) % 3 == 0  # every cell line on both sides
    leaky = [(np.flatnonzero(~third), np.flatnonzero(third))]
    with pytest.raises(ValueError, match="cell lines are in both train and test"):
        cross_validate(make, rows, split="cell_line", folds=leaky)
