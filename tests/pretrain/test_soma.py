from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from xtrimogene_sc.data import GeneVocab
from xtrimogene_sc.data._tokenize import align_rows
from xtrimogene_sc.datasets import synthetic_counts
from xtrimogene_sc.pretrain._soma import SomaSource
from xtrimogene_sc.pretrain._sources import CellSource
from xtrimogene_sc.pretrain._stream import StreamingCellDataset

needs_soma = pytest.mark.skipif(
    importlib.util.find_spec("tiledbsoma") is None,
    reason="tiledbsoma is not installed (pip install 'xtrimogene-sc[soma]')",
)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    import tiledbsoma.io

    adata = synthetic_counts(n_obs=150, n_vars=300, density=0.2, seed=7)
    symbols = adata.var_names.to_numpy().copy()
    symbols[1] = symbols[0]  # duplicated symbol: summed
    symbols[2] = "NOT_A_GENE"  # not in the vocabulary: dropped
    adata.var["feature_name"] = symbols
    adata.var_names = [f"ENSG{i:011d}" for i in range(adata.n_vars)]  # Census-style var names
    uri = str(tmp_path_factory.mktemp("soma") / "exp")
    tiledbsoma.io.from_anndata(uri, adata, "RNA", X_layer_name="raw")
    positions = GeneVocab.default().positions(list(symbols))
    return uri, adata, align_rows(adata.X, positions)


@needs_soma
def test_soma_rows_equal_aligned_counts(experiment):
    uri, adata, expected = experiment
    source = SomaSource(uri, shard_size=64)
    assert isinstance(source, CellSource)
    assert source.n_cells == 150
    assert [source.shard_size(s) for s in source.shard_ids()] == [64, 64, 22]
    blocks = [b for s in source.shard_ids() for b in source.read_shard(s, block_size=25)]
    got = sp.vstack(blocks, format="csr")
    assert got.dtype == np.float32
    assert got.has_canonical_format
    assert abs(got - expected).max() == 0
    part = sp.vstack(list(source.read_shard(source.shard_ids()[1], start=10, stop=30)))
    assert abs(part - expected[74:94]).max() == 0


@needs_soma
def test_soma_filter_and_stream(experiment):
    uri, adata, expected = experiment
    source = SomaSource(uri, obs_value_filter="batch == 'batch_1'", shard_size=40)
    rows = np.flatnonzero(adata.obs["batch"].to_numpy() == "batch_1")
    assert source.n_cells == len(rows)
    ds = StreamingCellDataset(source, batch_size=16, shuffle_buffer=0, transform=lambda b: b)
    got = sp.vstack(list(ds), format="csr")
    assert abs(got - expected[rows]).max() == 0
    with pytest.raises(ValueError, match="no X layer"):
        SomaSource(uri, layer="normalised")


def test_missing_tiledbsoma_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "tiledbsoma", None)
    with pytest.raises(ImportError, match=r"pip install 'xtrimogene-sc\[soma\]'"):
        SomaSource("anything")
