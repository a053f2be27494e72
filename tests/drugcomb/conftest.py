"""Synthetic drug-combination data with a learnable synergy rule; the real data where present."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from xtrimogene_sc.drugcomb import synergy_labels

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "drug_combination"


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """These networks are small: a second intra-op thread only adds contention on shared cores."""


# Small real molecules (valid SMILES) for the featurisation path.
_SMILES = {
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
    "caffeine": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "ibuprofen": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
    "5-FU": "O=c1[nH]cc(F)c(=O)[nH]1",
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",
    "benzene": "c1ccccc1",
}


@pytest.fixture
def smiles() -> dict[str, str]:
    """Six small real molecules by name; skips the test when RDKit is not installed."""
    pytest.importorskip(
        "rdkit", reason="RDKit is not installed (pip install 'xtrimogene-sc[drug]')"
    )
    return dict(_SMILES)


@pytest.fixture(scope="session")
def oneil_dir() -> Path:
    """The shared O'Neil data directory; skips the test when it is absent."""
    if not DATA_DIR.exists():
        pytest.skip(f"O'Neil drug-combination data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def synthetic():
    """12 drugs (random 64-bit features) x 8 cell lines (16 features), every unordered pair.

    The Loewe-like score adds a per-drug effect, a drug x cell-line term that only the cell
    features explain, a pair interaction and noise; the drug order in the table is random.
    """
    rng = np.random.default_rng(0)
    n_drugs, n_lines = 12, 8
    drug_names = [f"drug{i:02d}" for i in range(n_drugs)]
    line_names = [f"line{i}" for i in range(n_lines)]
    drug_features = pd.DataFrame(
        (rng.random((n_drugs, 64)) < 0.3).astype(np.float32), index=drug_names
    )
    cell_features = rng.normal(size=(n_lines, 16)).astype(np.float32)
    effect = rng.normal(scale=12, size=n_drugs)
    loading = rng.normal(size=(n_drugs, 4))
    rows = []
    for (i, j), c in itertools.product(itertools.combinations(range(n_drugs), 2), range(n_lines)):
        cell_term = 6 * (loading[i] + loading[j]) @ cell_features[c, :4]
        score = effect[i] + effect[j] + cell_term + 4 * loading[i] @ loading[j]
        score += rng.normal(scale=2)
        a, b = (i, j) if rng.random() < 0.5 else (j, i)
        rows.append((drug_names[a], drug_names[b], line_names[c], score))
    combinations = pd.DataFrame(rows, columns=["drug_a", "drug_b", "cell_line", "synergy_loewe"])
    combinations["label"] = synergy_labels(combinations["synergy_loewe"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells = ad.AnnData(np.abs(cell_features))
    cells.obs_names = line_names
    cells.obsm["X_feat"] = cell_features
    return {"drugs": drug_features, "cells": cells, "combinations": combinations}
