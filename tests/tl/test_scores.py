from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import xtrimogene_sc as xtg
from xtrimogene_sc.tl._scores import pca_reference


@pytest.fixture
def labelled():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 60)
    centres = {"a": 0.0, "b": 4.0, "c": 8.0}
    informative = np.stack([rng.normal(centres[label], 1.0, 8) for label in labels])
    adata = ad.AnnData(np.zeros((180, 1), dtype=np.float32))
    adata.obs["cell_type"] = labels
    adata.obsm["good"] = informative
    adata.obsm["noise"] = rng.normal(size=(180, 8))
    return adata


def test_scores_separate_an_informative_embedding_from_noise(labelled):
    good = xtg.tl.score_embedding(labelled, use_rep="good", labels_key="cell_type")
    noise = xtg.tl.score_embedding(labelled, use_rep="noise", labels_key="cell_type")
    assert good["knn_accuracy"] > 0.95
    assert good["leiden_ari"] > 0.9
    assert good["n_clusters"] == 3  # the resolution is chosen to match the number of labels
    assert noise["knn_accuracy"] < 0.6
    assert noise["leiden_ari"] < 0.2


def test_pca_reference_has_fifty_components_of_scaled_log_counts(tiny_adata, recwarn):
    pcs = pca_reference(tiny_adata)
    assert pcs.shape == (tiny_adata.n_obs, 50)
    assert np.isfinite(pcs).all()
    # the demo prints its scores beside this baseline: scanpy's densify notice is not news there
    assert not [w for w in recwarn if "zero-centering a sparse" in str(w.message)]


def test_depth_r2_is_high_when_the_embedding_holds_depth_and_near_zero_otherwise():
    from xtrimogene_sc.tl._scores import depth_r2

    rng = np.random.default_rng(0)
    depth = rng.lognormal(8.0, 0.5, size=300)
    noise = rng.normal(size=(300, 5))
    holds_depth = np.column_stack([np.log10(depth) + 0.01 * rng.normal(size=300), noise])
    assert depth_r2(holds_depth, depth) > 0.95
    assert depth_r2(noise, depth) < 0.05
