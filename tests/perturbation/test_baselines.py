from __future__ import annotations

import warnings

import numpy as np
import pytest

import xtrimogene_sc as xtg
from xtrimogene_sc.model import PerturbationBaseline

Setup = xtg.XTrimoGenePerturbation.setup_anndata


def _observed_mean(build, condition: str, cell_type_offset: int = 0) -> np.ndarray:
    counts = build.profile(condition, cell_type_offset)
    return np.log1p(counts)  # 10,000 counts per cell: ln(1 + 1e4 c / N) = ln(1 + c)


def _trained(adata, method, **kwargs):
    Setup(adata, **kwargs)
    baseline = PerturbationBaseline(adata, method=method)
    baseline.train()
    return baseline


def test_additive_recovers_an_additive_combination_exactly(exact_perturbation_data):
    build = exact_perturbation_data
    train = build(conditions=["ctrl", "A", "B"])
    baseline = _trained(train, "additive")
    combo = f"{build.names['B']}+{build.names['A']}"  # order does not matter
    pred = baseline.predict(train, [combo], aggregate="mean")
    np.testing.assert_allclose(pred.X[0], _observed_mean(build, "A+B"), atol=1e-5)
    assert pred.obs["condition"].tolist() == [combo]
    assert pred.uns["xtg_perturbation_prediction"]["scale"].startswith("ln(1 + 1e4")
    assert list(pred.var_names) == list(train.var_names)


def test_no_change_and_mean_shift_are_the_control_and_the_mean_response(exact_perturbation_data):
    build = exact_perturbation_data
    train = build()
    ctrl = _observed_mean(build, "ctrl")
    responses = [_observed_mean(build, c) - ctrl for c in ("A", "B", "A+B")]
    a = build.names["A"]
    no_change = _trained(train, "no_change").predict(train, [a], aggregate="mean")
    np.testing.assert_allclose(no_change.X[0], ctrl, atol=1e-5)
    mean_shift = _trained(train, "mean_shift").predict(train, [a], aggregate="mean")
    np.testing.assert_allclose(mean_shift.X[0], ctrl + np.mean(responses, axis=0), atol=1e-5)


def test_per_cell_predictions_are_each_control_cell_plus_the_shift(exact_perturbation_data):
    build = exact_perturbation_data
    train = build(n_per_condition=2)
    baseline = _trained(train, "additive")
    a = build.names["A"]
    pred = baseline.predict(train, ["ctrl", a])
    assert pred.n_obs == 2 * 2  # two control cells, two conditions
    assert pred.obs["control_cell"].tolist() == ["c0", "c1", "c0", "c1"]
    np.testing.assert_allclose(
        pred.X[:2], np.log1p(build.profile("ctrl", 0))[None].repeat(2, 0), atol=1e-5
    )
    np.testing.assert_allclose(
        pred.X[2:], np.log1p(build.profile("A", 0))[None].repeat(2, 0), atol=1e-5
    )


def test_additive_refuses_genes_never_perturbed_alone(exact_perturbation_data):
    build = exact_perturbation_data
    train = build(conditions=["ctrl", "A", "A+B"])
    baseline = _trained(train, "additive")
    with pytest.raises(ValueError, match="never perturbed alone"):
        baseline.predict(train, [f"{build.names['A']}+{build.names['B']}"])


def test_cell_type_responses_are_measured_against_their_own_controls(exact_perturbation_data):
    build = exact_perturbation_data
    train = build(cell_types=True)
    baseline = _trained(train, "additive", cell_type_key="cell_type")
    pred = baseline.predict(train, [build.names["A"]], aggregate="mean", cell_types=["T2"])
    assert pred.obs["cell_type"].tolist() == ["T2"]
    np.testing.assert_allclose(pred.X[0], _observed_mean(build, "A", 5), atol=1e-5)


def test_linear_genetic_beats_mean_shift_on_unseen_genes():
    adata = xtg.datasets.synthetic_perturbseq(
        n_genes=300, n_programs=6, program_size=20, n_single=30, n_combos=0,
        cells_per_condition=20, n_control=200, seed=1,
    )  # fmt: skip
    Setup(adata)
    singles = sorted(set(adata.obs["condition"].astype(str)) - {"ctrl"})
    unseen = singles[::4]
    train = adata[~adata.obs["condition"].isin(unseen).to_numpy()].copy()
    errors = {}
    for method in ("mean_shift", "linear"):
        baseline = PerturbationBaseline(train, method=method, n_components=8)
        baseline.train()
        pred = baseline.predict(train, unseen, aggregate="mean")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = xtg.tl.perturbation_metrics(pred, observed=adata)
        errors[method] = scores["mse_de"].mean()
    assert errors["linear"] < 0.8 * errors["mean_shift"]


def test_linear_treatment_interpolates_a_response_linear_in_the_cell_state():
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from xtrimogene_sc.data import GeneVocab

    symbols = list(GeneVocab.default().names[:120])
    rng = np.random.default_rng(0)
    rows, obs = [], []
    for t, level in enumerate([0, 1, 2, 3, 4]):
        for condition in ("control", "stim"):
            for _ in range(30):
                rate = np.full(120, 20.0)
                rate[0] = 20 + 20 * level  # cell-type state along one gene
                if condition == "stim":
                    rate[1] = 20 + 15 * level  # the response grows with the state
                rows.append(rng.poisson(rate * 5))
                obs.append((condition, f"T{t}"))
    frame = pd.DataFrame(
        obs, columns=["condition", "cell_type"], index=[f"c{i}" for i in range(len(obs))]
    )
    adata = ad.AnnData(
        sp.csr_matrix(np.array(rows, np.float32)), obs=frame, var=pd.DataFrame(index=symbols)
    )
    held_out = ((adata.obs["cell_type"] == "T4") & (adata.obs["condition"] == "stim")).to_numpy()
    train = adata[~held_out].copy()
    Setup(train, condition_key="condition", control="control", cell_type_key="cell_type")
    mse = {}
    for method in ("mean_shift", "linear"):
        baseline = PerturbationBaseline(train, method=method, n_components=3)
        baseline.train()
        pred = baseline.predict(train, ["stim"], cell_types=["T4"], aggregate="mean")
        scores = xtg.tl.perturbation_metrics(pred, observed=adata)
        mse[method] = float(scores["mse_de"].iloc[0])
    # T4 lies beyond the training types: the mean response is too small for it, the linear
    # model extrapolates along the state
    print(mse)
    assert mse["linear"] < 0.01
    assert mse["mean_shift"] > 10 * mse["linear"]


def test_unknown_method_is_refused(exact_perturbation_data):
    train = exact_perturbation_data()
    Setup(train)
    with pytest.raises(ValueError, match="method must be one of"):
        PerturbationBaseline(train, method="gears")
