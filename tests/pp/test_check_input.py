from __future__ import annotations

import numpy as np
import pytest

import xtrimogene_sc as xtg


def test_check_input_reports_overlap_and_totals():
    adata = xtg.datasets.synthetic_counts(n_obs=40, n_vars=200)
    with pytest.warns(UserWarning, match="vocabulary"):
        out = xtg.pp.check_input(adata, copy=True)
    assert "xtg_total_counts" not in adata.obs  # copy=True leaves the input alone
    np.testing.assert_allclose(out.obs["xtg_total_counts"], np.asarray(adata.X.sum(1)).ravel())
    assert out.uns["xtg"]["alignment"]["n_matched_vars"] == 200


def test_check_input_refuses_negative_values_naming_the_layer():
    adata = xtg.datasets.synthetic_counts(n_obs=40, n_vars=200)
    adata.layers["counts"] = adata.X.copy()
    adata.layers["counts"].data[0] = -1
    with pytest.raises(ValueError, match="counts"):
        xtg.pp.check_input(adata, layer="counts")
