"""Smoke test of the perturbation benchmark (``--quick``) and checks of its splits."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import xtrimogene_sc as xtg

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_perturbation.py"
KANG = ROOT.parent / "shared" / "data" / "perturbation" / "kang2018_pbmc_ifnb_scgen_valid.h5ad"
SCREEN = (
    ROOT.parent
    / "shared"
    / "data"
    / "perturbation_genetic"
    / "papalexi2021_thp1_eccite_lowmoi.h5ad"
)


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("_bench_perturbation", SCRIPT)


@pytest.fixture(scope="module")
def simulated():
    adata = xtg.datasets.synthetic_perturbseq(
        n_genes=150, n_programs=4, program_size=15, n_single=16, n_combos=20,
        cells_per_condition=5, n_control=40, seed=1,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xtg.XTrimoGenePerturbation.setup_anndata(adata)
    return adata


def test_gears_folds_hold_out_what_they_name(bench, simulated):
    folds = bench.gears_folds(simulated, [0, 1])
    assert [f["fold"] for f in folds] == ["seed 0", "seed 1"]
    for fold in folds:
        train, ctrl, observed = bench.split(simulated, fold)
        trained = set(train.obs["condition"].astype(str))
        assert not trained & fold["test"]
        assert (ctrl.obs["condition"] == "ctrl").all()
        assert set(observed.obs["condition"].astype(str)) == fold["test"] | {"ctrl"}
        trained_genes = {c for c in trained if "+" not in c} - {"ctrl"}
        cats = fold["categories"]
        assert len(cats["unseen single"]) == 16 // 4
        assert not set(cats["unseen single"]) & trained_genes
        for k, name in ((2, "combo seen 2/2"), (1, "combo seen 1/2"), (0, "combo seen 0/2")):
            for combo in cats[name]:
                assert sum(g in trained_genes for g in combo.split("+")) == k


@pytest.mark.skipif(not KANG.exists(), reason=f"shared Kang data not found at {KANG}")
def test_leave_one_cell_type_out_never_trains_on_the_held_out_stimulated_cells(bench):
    entry = bench._register(KANG, __import__("anndata").read_h5ad(KANG))
    folds = bench.loco_folds(entry["adata"])
    assert len(folds) == 7
    fold = next(f for f in folds if f["fold"] == "CD4T")
    train, ctrl, observed = bench.split(entry["adata"], fold)
    stim_cd4 = (train.obs["cell_type"] == "CD4T") & (train.obs["condition"] == "stimulated")
    assert not stim_cd4.any()
    assert (
        (train.obs["cell_type"] == "CD4T") & (train.obs["condition"] == "control")
    ).sum() == 278
    assert set(ctrl.obs["cell_type"]) == {"CD4T"}
    assert (ctrl.obs["condition"] == "control").all()
    assert observed.obs.groupby("condition", observed=True).size().to_dict() == {
        "control": 278, "stimulated": 356,
    }  # fmt: skip


@pytest.mark.skipif(not SCREEN.exists(), reason=f"staged screen not found at {SCREEN}")
def test_screen_folds_hold_out_targets_and_replicates(bench):
    import anndata as ad

    entry = bench._register(SCREEN, ad.read_h5ad(SCREEN))
    assert entry["protocol"] == "screen"
    adata = entry["adata"]
    folds = bench.screen_folds(adata, 0)
    unseen = [f for f in folds if f.get("replicate") is None]
    replicates = [f for f in folds if f.get("replicate") is not None]
    assert len(unseen) == 4
    assert [f["fold"] for f in replicates] == [
        "held-out rep_1",
        "held-out rep_2",
        "held-out rep_3",
    ]
    targets = set(adata.obs["condition"].astype(str)) - {"ctrl"}
    assert set().union(*(f["test"] for f in unseen)) == targets  # every target held out once
    measured = set().union(*(f["categories"]["unseen target, measured"] for f in unseen))
    assert "STAT1" in measured  # a measured gene
    assert "MARCH8" in set().union(
        *(f["categories"]["unseen target, not measured"] for f in unseen)
    )
    for fold in [unseen[0], replicates[0]]:
        train, ctrl, observed = bench.split(adata, fold)
        assert (ctrl.obs["condition"] == "ctrl").all()
        if fold.get("replicate") is None:
            assert not set(train.obs["condition"].astype(str)) & fold["test"]
        else:
            assert set(train.obs["bio_rep"]) == {"rep_2", "rep_3"}
            assert set(observed.obs["bio_rep"]) == set(ctrl.obs["bio_rep"]) == {"rep_1"}


def test_quick_run_prints_a_table_per_data_set(run_quick, tmp_path):
    csv = tmp_path / "scores.csv"
    stdout = run_quick(SCRIPT, "--csv", str(csv))
    rows = pd.read_csv(csv)
    methods = set(rows["method"])
    assert {"no_change", "mean_shift", "additive", "linear", "xTrimoGene (pretrained on the fold)",
            "xTrimoGene (untrained backbone)"} <= methods  # fmt: skip
    scored = rows[rows["category"].notna()]
    assert np.isfinite(scored.loc[scored["method"] != "no_change", "mse_de"]).all()
    assert "| unseen single | linear |" in stdout
    assert "additive" not in set(scored.loc[scored["category"] == "unseen single", "method"])
    if KANG.exists():
        assert "kang2018_pbmc_ifnb_scgen_valid" in stdout
        assert "| held-out cell type | xTrimoGene (pretrained on the fold) |" in stdout
    if SCREEN.exists():
        assert "papalexi2021_thp1_eccite_lowmoi" in stdout
        assert (
            "| seen target, held-out replicate | xTrimoGene (pretrained on the fold) |" in stdout
        )
        assert "| unseen target, not measured | linear |" in stdout
        assert "The knocked-out gene's own change" in stdout
