"""The real CRISPR screen (Papalexi 2021, staged): set-up with old symbols, baselines on it."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import xtrimogene_sc as xtg

SCREEN = (
    Path(__file__).resolve().parents[2].parent
    / "shared/data/perturbation_genetic/papalexi2021_thp1_eccite_lowmoi.h5ad"
)
pytestmark = pytest.mark.skipif(not SCREEN.exists(), reason=f"screen not staged at {SCREEN}")


@pytest.fixture(scope="module")
def screen() -> ad.AnnData:
    adata = ad.read_h5ad(SCREEN)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xtg.XTrimoGenePerturbation.setup_anndata(adata, condition_key="condition", control="ctrl")
    adata.uns["setup_warnings"] = [str(w.message) for w in caught]
    return adata


def test_a_target_named_by_its_previous_symbol_is_read_as_the_current_gene(screen):
    assert "MARCH8" in set(screen.obs["condition"].astype(str))
    renamed = [w for w in screen.uns["setup_warnings"] if "previous symbol" in w]
    assert renamed
    assert "MARCH8 -> MARCHF8" in renamed[0]
    assert screen.uns["xtg_perturbation"]["condition_type"] == "genetic"
    baseline = xtg.PerturbationBaseline(screen, method="additive")
    baseline.train()
    assert ("MARCHF8",) in [tuple(c) for c in baseline.profiles_.conditions]


@pytest.mark.parametrize("method", ["no_change", "mean_shift", "additive", "linear"])
def test_every_baseline_trains_and_predicts_on_the_screen(screen, method):
    baseline = xtg.PerturbationBaseline(screen, method=method)
    baseline.train()
    ctrl = screen[(screen.obs["condition"] == "ctrl").to_numpy()].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # renamed and unmeasured targets are said
        pred = baseline.predict(ctrl, conditions=["STAT1", "MARCH8", "ATF2"], aggregate="mean")
    assert pred.shape == (3, len(baseline.var_names))
    assert np.isfinite(pred.X).all()


def test_the_linear_baseline_says_when_a_target_is_not_a_measured_gene(screen):
    baseline = xtg.PerturbationBaseline(screen, method="linear")
    baseline.train()
    ctrl = screen[(screen.obs["condition"] == "ctrl").to_numpy()][:50].copy()
    assert "ATF2" not in set(baseline.var_names)
    with pytest.warns(UserWarning, match=r"\['ATF2'\].*predicted as the mean training response"):
        pred = baseline.predict(ctrl, conditions=["ATF2"], aggregate="mean")
    mean_shift = xtg.PerturbationBaseline(screen, method="mean_shift")
    mean_shift.train()
    expected = mean_shift.predict(ctrl, conditions=["ATF2"], aggregate="mean")
    np.testing.assert_allclose(pred.X, expected.X, atol=1e-5)
