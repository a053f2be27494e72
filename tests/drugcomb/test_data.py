from __future__ import annotations

import logging

import numpy as np
import pytest

from xtrimogene_sc.drugcomb import (
    LeakageError,
    check_split,
    folds_from_column,
    load_oneil,
    random_folds,
    synergy_labels,
)


def test_synergy_labels_leave_the_middle_out():
    labels = synergy_labels(np.array([-3.0, 0.0, 5.0, 10.0, 10.5, np.nan]))
    np.testing.assert_array_equal(labels, [0.0, np.nan, np.nan, np.nan, 1.0, np.nan])
    with pytest.raises(ValueError, match="must not exceed"):
        synergy_labels([1.0], synergy_above=0.0, antagonism_below=5.0)


def test_load_oneil_counts_match_the_provenance(oneil_dir):
    data = load_oneil(oneil_dir)
    rows = data.combinations
    assert len(rows) == 22_737  # unique triplets; 315 of them measured twice, averaged
    assert rows["n_replicates"].sum() == 23_052
    assert (rows["n_replicates"] == 2).sum() == 315
    assert len(data.smiles) == 38
    assert rows["cell_line"].nunique() == 39
    assert data.expression.shape == (31, 954)  # 8 lines have no TPM
    assert data.zscores.shape == (39, 3384)
    assert data.expression.obs["tissue"].notna().all()
    assert set(np.unique(rows["label"].dropna())) == {0.0, 1.0}
    kept = load_oneil(oneil_dir, average_replicates=False).combinations
    assert len(kept) == 23_052
    assert set(kept["replicate"]) == {0, 1}


def test_deepdds_scope_drops_lines_without_tpm_loudly(oneil_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="xtrimogene_sc.drugcomb._data"):
        data = load_oneil(oneil_dir, scope="deepdds")
    assert "COLO320DM" in caplog.text
    assert "OXALIPLATIN" in caplog.text
    assert len(data.smiles) == 36
    assert set(data.combinations["cell_line"]) == set(data.expression.obs_names)
    assert data.expression.n_obs == 31
    labelled = data.combinations["label"].notna().sum()
    # DeepDDS labels replicates one by one: 12,415 rows, 12,230 distinct triplets; averaging first
    # puts 32 of those triplets in the excluded 0..10 band
    assert labelled == 12_198


def test_deepsynergy_folds_are_leave_drug_pair_out(oneil_dir):
    rows = load_oneil(oneil_dir).combinations
    folds = folds_from_column(rows, "deepsynergy_fold", kind="drug_pair")
    assert len(folds) == 5
    train, test = random_folds(rows, n_folds=5)[0]
    check_split(rows, train, test, kind="random")
    with pytest.raises(LeakageError, match="drug pairs"):
        check_split(rows, train, test, kind="drug_pair")


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="synergy.csv"):
        load_oneil(tmp_path)
    with pytest.raises(ValueError, match="scope must be"):
        load_oneil(tmp_path, scope="everything")
