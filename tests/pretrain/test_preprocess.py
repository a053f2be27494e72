from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data import GeneVocab
from xtrimogene_sc.data._tokenize import align_rows
from xtrimogene_sc.datasets import synthetic_counts
from xtrimogene_sc.pretrain import _preprocess
from xtrimogene_sc.pretrain._manifest import read_manifest
from xtrimogene_sc.pretrain._preprocess import preprocess_h5ad
from xtrimogene_sc.pretrain._sources import PreprocessedSource
from xtrimogene_sc.pretrain._stream import StreamingCellDataset

MIN_GENES = 60


def aligned(adata) -> sp.csr_matrix:
    return align_rows(adata.X, GeneVocab.default().positions(list(adata.var_names)))


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    adatas = [
        synthetic_counts(n_obs=n, n_vars=300, density=0.2, seed=i)
        for i, n in enumerate((70, 130, 40))
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for i, adata in enumerate(adatas):
            adata.write_h5ad(folder / f"d{i}.h5ad")
    expected = []
    for adata in adatas:
        X = aligned(adata)
        expected.append(X[np.diff(X.indptr) >= MIN_GENES])
    return folder, adatas, expected


def run(folder, out, **kwargs):
    return preprocess_h5ad(
        folder, out, min_genes=MIN_GENES, cells_per_shard=50, progress=False, **kwargs
    )


def read_corpus(out) -> sp.csr_matrix:
    source = PreprocessedSource(out)
    return sp.vstack(
        [b for s in source.shard_ids() for b in source.read_shard(s, block_size=9)], format="csr"
    )


def test_qc_manifest_and_round_trip(inputs, tmp_path):
    folder, adatas, expected = inputs
    out = run(folder, tmp_path / "out")
    manifest = read_manifest(out)
    assert manifest["complete"]
    assert manifest["format_version"] == 1
    assert manifest["vocab_sha256"] == GeneVocab.default().sha256
    stats = list(manifest["inputs"].values())
    assert [s["n_cells_in"] for s in stats] == [a.n_obs for a in adatas]
    assert [s["n_cells_kept"] for s in stats] == [e.shape[0] for e in expected]
    assert 0 < sum(s["n_cells_kept"] for s in stats) < sum(a.n_obs for a in adatas)
    assert all(s["n_genes_matched"] == 300 for s in stats)
    assert all(sh["n_cells"] <= 50 for sh in manifest["shards"])
    reference = sp.vstack(expected, format="csr")
    assert manifest["n_cells"] == reference.shape[0]
    assert manifest["nnz"] == reference.nnz
    got = read_corpus(out)
    assert got.dtype == np.float32
    assert got.shape == (reference.shape[0], TOKENS.N_GENES)
    assert abs(got - reference).max() == 0
    assert got.has_canonical_format
    shard = out / manifest["shards"][0]["path"]
    arrays = {n: np.load(shard / f"{n}.npy", mmap_mode="r") for n in ("indptr", "indices", "data")}
    assert (arrays["indptr"].dtype, arrays["indices"].dtype, arrays["data"].dtype) == (
        np.int64, np.uint16, np.float32,
    )  # fmt: skip
    assert arrays["indptr"][-1] == len(arrays["indices"]) == manifest["shards"][0]["nnz"]
    # streaming the preprocessed corpus sees every kept cell once
    ds = StreamingCellDataset(PreprocessedSource(out), batch_size=32, transform=lambda b: b)
    assert sum(b.shape[0] for b in ds) == reference.shape[0]


def test_resume_after_interruption(inputs, tmp_path, monkeypatch):
    folder, _, expected = inputs
    out = tmp_path / "out"
    calls = []
    original = _preprocess._process_file

    def interrupted(source, path, *args):
        calls.append(path)
        if len(calls) == 2:  # die while the second file is half written
            writer = _preprocess.ShardWriter(out / "shards", "half", 50)
            writer.add(sp.csr_matrix(expected[1][:3]))
            raise KeyboardInterrupt
        return original(source, path, *args)

    monkeypatch.setattr(_preprocess, "_process_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(folder, out)
    manifest = read_manifest(out)
    assert not manifest["complete"]
    assert len(manifest["inputs"]) == 1
    assert any(p.name.startswith(".tmp-") for p in (out / "shards").iterdir())
    with pytest.warns(UserWarning, match="incomplete"):
        assert PreprocessedSource(out).n_cells == expected[0].shape[0]

    calls.clear()
    monkeypatch.setattr(
        _preprocess, "_process_file", lambda *a: calls.append(a[1]) or original(*a)
    )
    run(folder, out)
    assert [os.path.basename(p) for p in calls] == ["d1.h5ad", "d2.h5ad"]  # d0 was skipped
    manifest = read_manifest(out)
    ids = [s["id"] for s in manifest["shards"]]
    assert manifest["complete"]
    assert len(ids) == len(set(ids))
    assert sorted(p.name for p in (out / "shards").iterdir()) == sorted(ids)
    assert abs(read_corpus(out) - sp.vstack(expected, format="csr")).max() == 0

    calls.clear()
    run(folder, out)  # nothing left to do
    assert calls == []
    changed = folder / "d2.h5ad"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    run(folder, out)
    assert [os.path.basename(p) for p in calls] == ["d2.h5ad"]
    assert json.loads((out / "manifest.json").read_text())["n_cells"] == sum(
        e.shape[0] for e in expected
    )


def test_changed_settings_and_bad_inputs_raise(inputs, tmp_path):
    folder, adatas, _ = inputs
    out = run(folder, tmp_path / "out")
    with pytest.raises(ValueError, match="same settings"):
        preprocess_h5ad(folder, out, min_genes=10, progress=False)
    bad = adatas[0]
    bad.X = sp.csr_matrix(np.log1p(bad.X.toarray()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bad.write_h5ad(folder / "lognorm.h5ad")
    with pytest.raises(ValueError, match=r"lognorm\.h5ad.*log-normalised"):
        run(folder, out)
    assert not read_manifest(out)["complete"]
    with pytest.raises(FileNotFoundError, match="preprocess_h5ad"):
        PreprocessedSource(tmp_path)
