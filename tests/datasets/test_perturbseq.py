from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from xtrimogene_sc.data import GeneVocab
from xtrimogene_sc.datasets import synthetic_perturbseq

SMALL = {
    "n_genes": 200, "n_programs": 5, "program_size": 20, "n_single": 20, "n_combos": 10,
    "cells_per_condition": 25, "n_control": 300,
}  # fmt: skip


@pytest.fixture(scope="module")
def sim():
    return synthetic_perturbseq(**SMALL, seed=3)


def _lognorm(adata) -> np.ndarray:
    X = adata.X.toarray()
    return np.log1p(1e4 * X / X.sum(axis=1, keepdims=True))


def test_layout_and_conditions(sim):
    assert sim.shape == (300 + 30 * 25, 200)
    assert type(sim.X) is sp.csr_matrix
    np.testing.assert_array_equal(sim.X.data, np.round(sim.X.data))
    assert (sim.layers["counts"] != sim.X).nnz == 0
    assert (np.asarray(sim.X.sum(axis=1)).ravel() > 0).all()
    assert (GeneVocab.default().positions(list(sim.var_names)) >= 0).all()
    conditions = set(sim.obs["condition"].astype(str))
    assert "ctrl" in conditions
    assert sum("+" in c for c in conditions) == 10
    assert len(conditions) == 1 + 20 + 10
    for combo in (c for c in conditions if "+" in c):
        assert set(combo.split("+")) <= conditions
    truth = sim.uns["perturbation_truth"]
    assert truth["log_fold_change"].shape == (30, 200)
    assert set(truth["interaction"]["condition"]) == {c for c in conditions if "+" in c}


def test_same_seed_same_data_other_seed_other_data(sim):
    again = synthetic_perturbseq(**SMALL, seed=3)
    assert (again.X != sim.X).nnz == 0
    assert list(again.var_names) == list(sim.var_names)
    other = synthetic_perturbseq(**SMALL, seed=4)
    assert list(other.var_names) != list(sim.var_names)


def test_genes_of_a_program_are_co_expressed_in_control_cells(sim):
    control = _lognorm(sim)[(sim.obs["condition"] == "ctrl").to_numpy()]
    corr = np.corrcoef(control.T)
    program = sim.var["program"].to_numpy()
    same = (program[:, None] == program[None]) & (program[:, None] >= 0)
    np.fill_diagonal(same, False)
    other = (program[:, None] != program[None]) & (program[:, None] >= 0) & (program[None] >= 0)
    # (normalisation to a fixed total makes independent programs slightly anti-correlated)
    assert np.nanmean(corr[same]) > np.nanmean(corr[other]) + 0.15


def test_knockdown_lowers_the_target_gene(sim):
    values = _lognorm(sim)
    conditions = sim.obs["condition"].astype(str).to_numpy()
    control = values[conditions == "ctrl"].mean(axis=0)
    singles = [c for c in set(conditions) - {"ctrl"} if "+" not in c]
    drops = [
        control[sim.var_names.get_loc(g)]
        - values[conditions == g].mean(axis=0)[sim.var_names.get_loc(g)]
        for g in singles
    ]
    assert np.mean(np.array(drops) > 0) > 0.9


def test_without_interactions_combinations_are_additive_in_log_rate():
    sim = synthetic_perturbseq(**SMALL, interaction_fraction=0.0, seed=5)
    effects = sim.uns["perturbation_truth"]["log_fold_change"]
    assert set(sim.uns["perturbation_truth"]["interaction"]["type"]) == {"additive"}
    for combo in (c for c in effects.index if "+" in c):
        a, b = combo.split("+")
        np.testing.assert_allclose(effects.loc[combo], effects.loc[a] + effects.loc[b])


def test_interactions_make_some_combinations_non_additive():
    sim = synthetic_perturbseq(**SMALL, interaction_fraction=1.0, seed=5)
    effects = sim.uns["perturbation_truth"]["log_fold_change"]
    kinds = sim.uns["perturbation_truth"]["interaction"].set_index("condition")["type"]
    gaps = {
        c: np.abs(
            effects.loc[c] - effects.loc[c.split("+")[0]] - effects.loc[c.split("+")[1]]
        ).max()
        for c in kinds.index
    }
    assert "additive" not in set(kinds)
    assert max(gaps.values()) > 0.3


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="background"):
        synthetic_perturbseq(n_genes=100, n_programs=5, program_size=20)
    with pytest.raises(ValueError, match="n_combos"):
        synthetic_perturbseq(n_single=4, n_combos=10)
