from __future__ import annotations

import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import xtrimogene_sc as xtg

pytest.importorskip("scib_metrics", reason="the integration extra is not installed")


def two_batches(n_cells: int = 300, seed: int = 0) -> ad.AnnData:
    """Three well-separated cell types in two batches, embedded mixed and fully separated.

    ``mixed``: the batch does not move a cell at all. ``separated``: the second batch is
    shifted far beyond the distance between cell types, so each batch is its own island.
    """
    rng = np.random.default_rng(seed)
    cell_type = rng.integers(0, 3, n_cells)
    batch = rng.integers(0, 2, n_cells)
    mixed = rng.normal(0, 10, (3, 10))[cell_type] + rng.normal(0, 1, (n_cells, 10))
    separated = mixed + 40.0 * batch[:, None]
    adata = ad.AnnData(
        np.zeros((n_cells, 1), dtype=np.float32),
        obs=pd.DataFrame(
            {"batch": batch.astype(str), "cell_type": [f"type{t}" for t in cell_type]},
            index=[f"cell{i}" for i in range(n_cells)],
        ),
    )
    adata.obsm["mixed"] = mixed
    adata.obsm["separated"] = separated
    adata.obsm["X_pca"] = separated
    return adata


@pytest.fixture(scope="module")
def scored() -> pd.DataFrame:
    return xtg.tl.score_integration(
        two_batches(), ["separated", "mixed"], batch_key="batch", labels_key="cell_type"
    )


def test_perfect_mixing_scores_near_one_and_separated_batches_near_zero(scored):
    mixed, separated = scored.loc["mixed"], scored.loc["separated"]
    assert list(scored.index) == ["separated", "mixed"]  # the order asked for
    assert mixed["Batch correction"] > 0.9
    assert separated["Batch correction"] < 0.2
    for metric in ("iLISI", "KBET", "PCR comparison"):
        assert mixed[metric] > 0.9
        assert separated[metric] < 0.05
    # both keep the three types apart within a batch; only the mixed one clusters by type
    assert mixed["Bio conservation"] > 0.9
    assert mixed["KMeans ARI"] > 0.95 > separated["KMeans ARI"]


def test_total_is_scibs_weighting_of_the_two_aggregates(scored):
    expected = 0.4 * scored["Batch correction"] + 0.6 * scored["Bio conservation"]
    np.testing.assert_allclose(scored["Total"], expected)
    assert ((scored.to_numpy() >= 0) & (scored.to_numpy() <= 1)).all()


def test_the_input_is_left_unchanged():
    adata = two_batches(n_cells=120)
    before = (set(adata.obsm.keys()), adata.obs.copy(), adata.uns.copy())
    scores = xtg.tl.score_integration(adata, "mixed", batch_key="batch", labels_key="cell_type")
    assert list(scores.index) == ["mixed"]
    assert set(adata.obsm.keys()) == before[0]
    pd.testing.assert_frame_equal(adata.obs, before[1])
    assert dict(adata.uns) == dict(before[2])


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda a: a.obsm.pop("X_pca"), KeyError, "sc.pp.pca"),
        (lambda a: a.obs.drop(columns="batch", inplace=True), KeyError, "no column 'batch'"),
        (lambda a: a.obs.__setitem__("batch", "one"), ValueError, "single batch"),
        (lambda a: a.obs.__setitem__("cell_type", np.nan), ValueError, "subset to the labelled"),
        (lambda a: a.obsm["mixed"].__setitem__((0, 0), np.nan), ValueError, "NaN"),
        (lambda a: a._inplace_subset_obs(slice(0, 50)), ValueError, "at least 91 cells"),
    ],
)
def test_bad_input_is_refused_with_a_message_that_says_what_to_do(change, error, message):
    adata = two_batches(n_cells=120)
    change(adata)
    with pytest.raises(error, match=message):
        xtg.tl.score_integration(adata, "mixed", batch_key="batch", labels_key="cell_type")


def test_a_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "scib_metrics.benchmark", None)
    with pytest.raises(ImportError, match=r"xtrimogene-sc\[integration\]"):
        xtg.tl.score_integration(
            two_batches(n_cells=120), "mixed", batch_key="batch", labels_key="cell_type"
        )
