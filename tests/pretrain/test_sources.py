from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data import GeneVocab
from xtrimogene_sc.data._tokenize import align_rows
from xtrimogene_sc.datasets import synthetic_counts
from xtrimogene_sc.pretrain._sources import CellSource, H5adDirectorySource


def messy_adata(seed: int = 0, n_obs: int = 90) -> ad.AnnData:
    """Counts whose genes include a duplicated symbol and two genes outside the vocabulary."""
    adata = synthetic_counts(n_obs=n_obs, n_vars=300, density=0.2, seed=seed)
    names = adata.var_names.to_numpy().copy()
    names[1] = names[0]
    names[2], names[3] = "NOT_A_GENE_1", "NOT_A_GENE_2"
    first = np.random.default_rng(seed).integers(1, 5, (n_obs, 4)).astype(np.float32)
    adata.X = sp.hstack([sp.csr_matrix(first), adata.X[:, 4:]], format="csr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        adata.var_names = names
        adata.layers["counts"] = adata.X.copy()
    return adata


def reference(adata: ad.AnnData, X=None) -> sp.csr_matrix:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        positions = GeneVocab.default().align(list(adata.var_names)).var_to_position
    return align_rows(sp.csr_matrix(adata.X if X is None else X), positions)


def read_all(source, shard_id, **kwargs) -> sp.csr_matrix:
    return sp.vstack(list(source.read_shard(shard_id, **kwargs)), format="csr")


def assert_same(a: sp.csr_matrix, b: sp.csr_matrix) -> None:
    assert a.shape == b.shape == (a.shape[0], TOKENS.N_GENES)
    assert a.dtype == np.float32
    assert a.has_canonical_format
    assert abs(a - b).max() == 0


def write(adata: ad.AnnData, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        adata.write_h5ad(path)
    return path


@pytest.fixture
def corpus(tmp_path):
    adatas = [messy_adata(seed=i, n_obs=60 + 30 * i) for i in range(3)]
    for i, adata in enumerate(adatas):
        write(adata, tmp_path / f"part{i}.h5ad")
    return tmp_path, adatas


def test_directory_source_aligns_counts(corpus):
    folder, adatas = corpus
    source = H5adDirectorySource(folder)
    assert isinstance(source, CellSource)
    assert source.n_cells == sum(a.n_obs for a in adatas)
    assert [s.rsplit("/", 1)[-1] for s in source.shard_ids()] == [
        f"part{i}.h5ad" for i in range(3)
    ]
    for shard, adata in zip(source.shard_ids(), adatas, strict=True):
        assert source.shard_size(shard) == adata.n_obs
        expected = reference(adata)
        got = read_all(source, shard, block_size=7)
        assert_same(got, expected)
        # the duplicated symbol is summed, the unknown genes are dropped
        position = GeneVocab.default().positions([adata.var_names[0]])[0]
        np.testing.assert_array_equal(
            got[:, position].toarray().ravel(), adata.X[:, :2].sum(axis=1).A1
        )
        assert got.sum() == adata.X[:, np.r_[0:2, 4 : adata.n_vars]].sum()
        assert_same(read_all(source, shard, block_size=4, start=5, stop=23), expected[5:23])


@pytest.mark.parametrize("where", ["dense", "layer", "raw"])
def test_other_storage(tmp_path, where):
    adata = messy_adata()
    counts = adata.X.copy()
    if where == "dense":
        adata.X = counts.toarray()
    elif where == "layer":
        adata.X = sp.csr_matrix(np.log1p(counts.toarray()))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            adata.raw = adata.copy()
        adata.X = sp.csr_matrix(np.log1p(counts.toarray()))
    path = write(adata, tmp_path / "a.h5ad")
    layer = {"dense": None, "layer": "counts", "raw": "raw"}[where]
    source = H5adDirectorySource([path], layer=layer)
    assert_same(read_all(source, str(path), block_size=16), reference(adata, counts))


def test_log_normalised_file_raises_with_its_name(corpus):
    folder, adatas = corpus
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bad = adatas[0].copy()
    bad.X = sp.csr_matrix(np.log1p(bad.X.toarray()))
    write(bad, folder / "lognorm.h5ad")
    source = H5adDirectorySource(folder)
    shard = next(s for s in source.shard_ids() if s.endswith("lognorm.h5ad"))
    with pytest.raises(ValueError, match=r"lognorm\.h5ad.*non-integer.*log-normalised"):
        read_all(source, shard)


def test_ensembl_ids_raise_with_file_name_and_symbols_key_fixes_it(tmp_path):
    adata = synthetic_counts(n_obs=20, n_vars=200, seed=3)
    adata.var["feature_name"] = adata.var_names.to_numpy()
    adata.var_names = [f"ENSG{i:011d}" for i in range(adata.n_vars)]
    path = write(adata, tmp_path / "ensembl.h5ad")
    with pytest.raises(ValueError, match=r"ensembl\.h5ad.*Ensembl.*feature_name"):
        H5adDirectorySource(tmp_path)
    source = H5adDirectorySource(tmp_path, gene_symbols_key="feature_name")
    expected = align_rows(adata.X, GeneVocab.default().positions(list(adata.var["feature_name"])))
    assert_same(read_all(source, str(path)), expected)


def test_low_overlap_and_csc_raise_with_file_name(tmp_path):
    adata = synthetic_counts(n_obs=20, n_vars=200, seed=4)
    adata.var_names = [f"gene{i}" for i in range(150)] + list(adata.var_names[150:])
    write(adata, tmp_path / "mouse.h5ad")
    with pytest.raises(ValueError, match=r"mouse\.h5ad.*vocabulary"):
        H5adDirectorySource(tmp_path / "mouse.h5ad")
    csc = synthetic_counts(n_obs=20, n_vars=200, seed=5)
    csc.X = sp.csc_matrix(csc.X)
    write(csc, tmp_path / "csc.h5ad")
    with pytest.raises(ValueError, match=r"csc\.h5ad.*CSR"):
        H5adDirectorySource([tmp_path / "csc.h5ad"])


def test_missing_inputs(tmp_path):
    with pytest.raises(ValueError, match="no .h5ad"):
        H5adDirectorySource(tmp_path)
    with pytest.raises(FileNotFoundError):
        H5adDirectorySource([tmp_path / "nope.h5ad"])
    with pytest.raises(ValueError, match="layer"):
        H5adDirectorySource([write(synthetic_counts(n_obs=5), tmp_path / "a.h5ad")], layer="x")
