from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from xtrimogene_sc.data import GeneVocab
from xtrimogene_sc.datasets import pbmc68k_counts, synthetic_counts


@pytest.fixture(scope="module")
def pbmc():
    return pbmc68k_counts()


def test_pbmc_shape_and_labels(pbmc):
    assert pbmc.shape == (700, 765)
    assert "bulk_labels" in pbmc.obs
    assert "louvain" in pbmc.obs
    assert pbmc.var_names[0] == "HES4"


def test_pbmc_counts_are_integer_csr(pbmc):
    assert type(pbmc.X) is sp.csr_matrix
    assert pbmc.X.dtype == np.float32
    np.testing.assert_array_equal(pbmc.X.data, np.round(pbmc.X.data))
    assert pbmc.X.data.min() >= 1
    assert (pbmc.layers["counts"] != pbmc.X).nnz == 0


def test_pbmc_smallest_count_per_cell_is_one(pbmc):
    row_min = np.array([pbmc.X[i].data.min() for i in range(pbmc.n_obs)])
    np.testing.assert_array_equal(row_min, 1)


def test_pbmc_recovery_reproduces_source(pbmc):
    import scanpy as sc

    source = sc.datasets.pbmc68k_reduced()
    lognorm = source.raw.X.toarray()
    counts = pbmc.X.toarray()
    # Renormalising with the obs total (target 1e4) must give back the stored 3-decimal values.
    n_counts = source.obs["n_counts"].to_numpy()[:, None]
    np.testing.assert_allclose(np.log1p(counts / n_counts * 1e4), lognorm, atol=1.5e-3)


def test_pbmc_records_recovery_error(pbmc):
    info = pbmc.uns["xtg_dataset"]
    assert info["name"] == "pbmc68k_reduced"
    assert 0.0 <= info["max_recovery_error"] < 0.5


def test_synthetic_is_deterministic():
    a = synthetic_counts(seed=3)
    b = synthetic_counts(seed=3)
    c = synthetic_counts(seed=4)
    assert (a.X != b.X).nnz == 0
    assert a.var_names.equals(b.var_names)
    assert a.obs.equals(b.obs)
    assert not a.var_names.equals(c.var_names)


def test_synthetic_shape_density_and_vocab_names():
    adata = synthetic_counts(n_obs=200, n_vars=150, density=0.2)
    assert adata.shape == (200, 150)
    assert type(adata.X) is sp.csr_matrix
    np.testing.assert_array_equal(adata.X.data, np.round(adata.X.data))
    assert adata.X.nnz / (200 * 150) == pytest.approx(0.2, rel=0.1)
    assert (GeneVocab.default().positions(adata.var_names) >= 0).all()
    assert adata.var_names.is_unique


def test_synthetic_library_sizes_vary():
    totals = np.asarray(synthetic_counts().X.sum(axis=1)).ravel()
    assert totals.min() > 0
    assert totals.std() / totals.mean() > 0.3


def test_synthetic_labels_are_learnable():
    adata = synthetic_counts(n_obs=300, n_vars=400, n_labels=3, n_batches=2)
    assert adata.obs["labels"].cat.categories.tolist() == ["type_0", "type_1", "type_2"]
    assert adata.obs["batch"].nunique() == 2
    X = sp.csr_matrix(adata.X.multiply(1e4 / adata.X.sum(axis=1))).log1p().toarray()
    labels = adata.obs["labels"].cat.codes.to_numpy()
    train = np.arange(adata.n_obs) % 2 == 0
    centroids = np.stack([X[train & (labels == k)].mean(axis=0) for k in range(3)])
    distances = np.square(X[~train, None, :] - centroids[None]).sum(axis=2)
    assert (distances.argmin(axis=1) == labels[~train]).mean() > 0.9
