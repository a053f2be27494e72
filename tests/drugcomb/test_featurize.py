from __future__ import annotations

import sys

import numpy as np
import pytest

from xtrimogene_sc.drugcomb import morgan_fingerprints


def test_morgan_fingerprints_are_binary_named_and_deterministic(smiles):
    table = morgan_fingerprints(smiles, radius=2, n_bits=256)
    assert table.shape == (len(smiles), 256)
    assert list(table.index) == list(smiles)
    assert set(np.unique(table.to_numpy())) <= {0, 1}
    assert (table.sum(axis=1) > 0).all()
    assert table.equals(morgan_fingerprints(smiles, radius=2, n_bits=256))
    # a larger radius sets at least the bits of the smaller one (same folding)
    wider = morgan_fingerprints(smiles, radius=3, n_bits=256)
    assert (wider.to_numpy() >= table.to_numpy()).all()
    # distinct molecules, distinct fingerprints
    assert len({tuple(row) for row in table.to_numpy()}) == len(smiles)


@pytest.mark.parametrize(
    ("bad_smiles", "match"),
    [
        ("C1CC((", r"cannot parse the SMILES 'C1CC\(\(' \(syntax error\)"),
        ("C(C)(C)(C)(C)C", "is not a valid molecule"),
        ("", "has no SMILES"),
        (None, "has no SMILES"),
    ],
)
def test_bad_smiles_are_named_in_the_error(smiles, bad_smiles, match):
    with pytest.raises(ValueError, match=match) as info:
        morgan_fingerprints({**smiles, "mystery-drug": bad_smiles})
    assert "mystery-drug" in str(info.value)


def test_bad_fingerprint_settings_are_refused(smiles):
    with pytest.raises(ValueError, match="n_bits"):
        morgan_fingerprints(smiles, n_bits=0)


def test_missing_rdkit_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rdkit", None)  # import rdkit now raises ImportError
    with pytest.raises(ImportError, match=r"xtrimogene-sc\[drug\]"):
        morgan_fingerprints({"aspirin": "CC(=O)Oc1ccccc1C(=O)O"})
