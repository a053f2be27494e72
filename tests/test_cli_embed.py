"""``xtrimogene-sc embed`` on the scFoundation parity fixture: outputs, files and refusals."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import xtrimogene_sc as xtg
from xtrimogene_sc.cli import main

PARITY = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "scfoundation_parity"
CKPT = PARITY / "tiny_models.ckpt"
pytestmark = pytest.mark.skipif(not CKPT.exists(), reason=f"parity fixture not at {PARITY}")


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(PARITY / "reference_outputs.npz"))


@pytest.fixture
def cells_h5ad(ref, tmp_path) -> Path:
    adata = ad.AnnData(sp.csr_matrix(ref["counts"].astype(np.float32)))
    adata.var_names = list(xtg.GeneVocab.default().names)
    adata.obs["cell_type"] = ref["cell_types"]
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    return path


def _embed(*args: str | Path) -> int:
    return main(["embed", "--checkpoint", str(CKPT), "--no-progress", *map(str, args)])


def test_embed_writes_the_reference_embedding_and_keeps_the_data(cells_h5ad, ref, tmp_path):
    out, genes = tmp_path / "out.h5ad", tmp_path / "genes.h5"
    names = [xtg.GeneVocab.default().names[i] for i in ref["gene_context_genes"][:5]]
    assert _embed("--input", cells_h5ad, "--output", out, "--obsm-key", "X_scfoundation",
                  "--tgthighres", "t4", "--batch-size", "3") == 0  # fmt: skip
    result = ad.read_h5ad(out)
    np.testing.assert_allclose(result.obsm["X_scfoundation"], ref["cell_embedding"], atol=1e-5)
    assert result.uns["X_scfoundation"]["params"]["t_mode"] == "absolute"
    np.testing.assert_array_equal(result.X.toarray(), ref["counts"])
    assert list(result.obs["cell_type"]) == list(ref["cell_types"])
    # gene embeddings of the 'gene' weights, one per cell, to a separate file
    assert main(["embed", "--checkpoint", str(CKPT), "--key", "gene", "--input", str(cells_h5ad),
                 "--output", str(tmp_path / "g.h5ad"), "--tgthighres", "t4", "--genes", str(genes),
                 "--gene-names", ",".join(names), "--gene-reduce", "none", "--no-progress"]) == 0  # fmt: skip
    with h5py.File(genes) as f:
        per_cell = f["gene_embeddings"][:]
        assert [g.decode() for g in f["genes"][:]] == names
    np.testing.assert_allclose(per_cell, ref["gene_context_emb"][:, :5], atol=1e-4)


def test_embed_in_place_and_mean_gene_embeddings(cells_h5ad, tmp_path):
    genes = tmp_path / "mean.h5"
    assert _embed("--input", cells_h5ad, "--output", cells_h5ad, "--genes", genes) == 0
    assert ad.read_h5ad(cells_h5ad).obsm["X_xtg"].shape == (8, 256)
    with h5py.File(genes) as f:
        assert f["gene_embeddings"].shape == (19264, 32)
        assert f.attrs["n_cells"] == 8
    assert not list(tmp_path.glob(".*partial*"))  # nothing left behind
    # a second run keeps the embedding the file already holds unless told to replace it
    before = ad.read_h5ad(cells_h5ad).obsm["X_xtg"]
    assert _embed("--input", cells_h5ad, "--output", cells_h5ad, "--pooling", "mean") == 2
    np.testing.assert_array_equal(ad.read_h5ad(cells_h5ad).obsm["X_xtg"], before)
    assert _embed("--input", cells_h5ad, "--output", cells_h5ad, "--pooling", "mean",
                  "--overwrite") == 0  # fmt: skip
    assert ad.read_h5ad(cells_h5ad).obsm["X_xtg"].shape == (8, 64)  # mean: one encoder width
    assert not list(tmp_path.glob(".*probe*"))


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--tgthighres", "x4"], "target-depth code 'x4'"),
        (["--device", "cuda:0"], "no CUDA GPU"),
        (
            ["--key", "gene", "--gene-names", "NOTAGENE", "--genes", "g.h5"],
            "not in the vocabulary",
        ),
    ],
)
def test_embed_reports_user_errors_in_one_line(cells_h5ad, tmp_path, capsys, extra, fragment):
    if "cuda:0" in extra and __import__("torch").cuda.is_available():
        pytest.skip("a GPU is visible")
    extra = [str(tmp_path / e) if e.endswith(".h5") else e for e in extra]
    assert _embed("--input", cells_h5ad, "--output", tmp_path / "o.h5ad", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err
    assert err.startswith("xtrimogene-sc embed:")
    assert len(err.splitlines()) == 1


def test_embed_refuses_missing_input_and_existing_output(cells_h5ad, tmp_path, capsys):
    assert _embed("--input", tmp_path / "nope.h5ad", "--output", tmp_path / "o.h5ad") == 2
    assert "no such .h5ad file" in capsys.readouterr().err
    (tmp_path / "taken.h5ad").write_text("user data")
    assert _embed("--input", cells_h5ad, "--output", tmp_path / "taken.h5ad") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "taken.h5ad").read_text() == "user data"


def test_embed_uses_the_saved_models_default_pooling(cells_h5ad, tmp_path):
    assert _embed("--input", cells_h5ad, "--output", tmp_path / "ref.h5ad") == 0
    assert ad.read_h5ad(tmp_path / "ref.h5ad").uns["X_xtg"]["params"]["pooling"] == "concat"
    model = xtg.XTrimoGene.load(CKPT)
    model.default_pooling = "mean"  # as a recipe-trained model records it
    model.save(tmp_path / "m")
    out = tmp_path / "out.h5ad"
    assert main(["embed", "--checkpoint", str(tmp_path / "m"), "--no-progress",
                 "--input", str(cells_h5ad), "--output", str(out)]) == 0  # fmt: skip
    result = ad.read_h5ad(out)
    assert result.uns["X_xtg"]["params"]["pooling"] == "mean"
    assert result.obsm["X_xtg"].shape[1] == model.config.encoder_dim
