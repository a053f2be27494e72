from __future__ import annotations

import numpy as np
import pytest

import xtrimogene_sc as xtg
from xtrimogene_sc.model import PerturbationBaseline
from xtrimogene_sc.perturbation._metrics import delta_scores


def test_delta_scores_by_hand():
    control = np.zeros(4)
    observed = np.array([1.0, -2.0, 0.5, 0.0])
    predicted = np.array([0.5, -1.0, 0.0, 0.1])
    scores = delta_scores(predicted, observed, control, n_top_de=2)
    # DE genes: the two largest |observed change|, genes 1 and 0; predicted -1, 0.5 vs -2, 1
    assert scores["pearson_delta_de"] == pytest.approx(1.0)
    assert scores["mse_de"] == pytest.approx(((-1 + 2) ** 2 + (0.5 - 1) ** 2) / 2)
    assert scores["direction_de"] == pytest.approx(1.0)
    # all genes: centred a = [0.6, -0.9, 0.1, 0.2], b = [1.125, -1.875, 0.625, 0.125]
    assert scores["pearson_delta"] == pytest.approx(2.45 / np.sqrt(1.22 * 5.1875))


def test_delta_scores_wrong_direction_and_no_change():
    control = np.full(3, 2.0)
    observed = control + np.array([1.0, -1.0, 0.2])
    flipped = control - (observed - control)
    scores = delta_scores(flipped, observed, control, n_top_de=3)
    assert scores["pearson_delta"] == pytest.approx(-1.0)
    assert scores["direction_de"] == 0.0
    assert scores["mse_de"] == pytest.approx((4 + 4 + 0.16) / 3)
    unchanged = delta_scores(control, observed, control, n_top_de=2)
    assert np.isnan(unchanged["pearson_delta"])
    assert np.isnan(unchanged["pearson_delta_de"])
    assert unchanged["direction_de"] == 0.0
    assert unchanged["mse_de"] == pytest.approx(1.0)


def test_perturbation_metrics_on_an_exact_prediction(exact_perturbation_data):
    build = exact_perturbation_data
    adata = build(cell_types=True)
    xtg.XTrimoGenePerturbation.setup_anndata(adata, cell_type_key="cell_type")
    train = adata[adata.obs["condition"] != f"{build.names['A']}+{build.names['B']}"].copy()
    baseline = PerturbationBaseline(train, method="additive")
    baseline.train()
    combo = f"{build.names['A']}+{build.names['B']}"
    for aggregate in ("cells", "mean"):
        pred = baseline.predict(train, [combo], aggregate=aggregate)
        table = xtg.tl.perturbation_metrics(pred, observed=adata)
        assert list(table.columns) == [
            "condition", "cell_type", "n_cells", "pearson_delta", "pearson_delta_de", "mse_de",
            "direction_de",
        ]  # fmt: skip
        assert table["cell_type"].tolist() == ["T1", "T2"]
        assert table["n_cells"].tolist() == [3, 3]
        np.testing.assert_allclose(table["pearson_delta"], 1.0, atol=1e-6)
        np.testing.assert_allclose(table["mse_de"], 0.0, atol=1e-9)


def test_perturbation_metrics_refuses_other_input(exact_perturbation_data):
    build = exact_perturbation_data
    adata = build()
    xtg.XTrimoGenePerturbation.setup_anndata(adata)
    with pytest.raises(ValueError, match="not a perturbation prediction"):
        xtg.tl.perturbation_metrics(adata, observed=adata)
    baseline = PerturbationBaseline(adata, method="mean_shift")
    baseline.train()
    pred = baseline.predict(adata, [build.names["A"]])
    with pytest.raises(ValueError, match="different gene set"):
        xtg.tl.perturbation_metrics(pred, observed=adata[:, :-5].copy())
