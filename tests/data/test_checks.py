from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from xtrimogene_sc.data import GeneAlignment, GeneVocab, check_counts, to_csr_matrix

N_GENES = 120


@pytest.fixture(scope="module")
def alignment() -> GeneAlignment:
    vocab = GeneVocab.default()
    # 120 vocabulary genes plus 2 unknown columns at the end.
    names = [*vocab.names[:N_GENES], "NOT_A_GENE_1", "NOT_A_GENE_2"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return vocab.align(names)


@pytest.fixture
def counts() -> np.ndarray:
    rng = np.random.default_rng(0)
    X = rng.poisson(0.5, size=(30, N_GENES + 2)).astype(np.float32)
    X[:, 0] += 1  # no empty cells
    return X


def test_totals_cover_matched_columns_only(counts, alignment):
    counts[:, -2:] = 100
    totals = check_counts(counts, alignment=alignment, layer=None)
    np.testing.assert_allclose(totals, counts[:, :N_GENES].sum(axis=1))
    assert totals.dtype == np.float64


@pytest.mark.parametrize(
    "fmt", ["csr_matrix", "csc_matrix", "csr_array", "csc_array", "coo_matrix"]
)
def test_sparse_formats_agree_with_dense(counts, alignment, fmt):
    X = getattr(sp, fmt)(counts)
    totals = check_counts(X, alignment=alignment, layer=None, chunk_size=7)
    np.testing.assert_allclose(totals, counts[:, :N_GENES].sum(axis=1))


@pytest.mark.parametrize("sparse", [True, False])
def test_backed_h5ad(counts, alignment, tmp_path, sparse):
    path = tmp_path / "tiny.h5ad"
    ad.AnnData(X=sp.csr_matrix(counts) if sparse else counts).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    try:
        totals = check_counts(backed.X, alignment=alignment, layer=None, chunk_size=8)
    finally:
        backed.file.close()
    np.testing.assert_allclose(totals, counts[:, :N_GENES].sum(axis=1))


def test_nan_rejected_with_count_and_layer(counts, alignment):
    counts[3, 5] = np.nan
    counts[4, 6] = np.inf
    with pytest.raises(ValueError, match=r"adata\.layers\['raw'\] contains 2 NaN or infinite"):
        check_counts(sp.csr_matrix(counts), alignment=alignment, layer="raw")


def test_negative_rejected(counts, alignment):
    counts[2, 2] = -1
    with pytest.raises(ValueError, match=r"adata\.X contains 1 negative values"):
        check_counts(counts, alignment=alignment, layer=None)


def test_log_normalised_rejected_with_layer_hint(counts, alignment):
    lognorm = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    with pytest.raises(ValueError, match="non-integer") as info:
        check_counts(sp.csr_matrix(lognorm), alignment=alignment, layer=None)
    message = str(info.value)
    assert "adata.X" in message
    assert 'layer="counts"' in message
    assert "raw counts" in message


def test_near_integer_values_accepted(counts, alignment):
    check_counts(counts + 1e-6 * (counts > 0), alignment=alignment, layer=None)


def test_empty_cells_detected(counts, alignment):
    counts[[4, 9], :N_GENES] = 0
    counts[4, -1] = 5  # counts only in an unmatched gene still make the cell empty
    with pytest.raises(ValueError, match=r"2 cells have zero counts.*\[4, 9\]") as info:
        check_counts(sp.csr_matrix(counts), alignment=alignment, layer=None)
    assert "filter_cells" in str(info.value)


def test_allow_empty_returns_totals(counts, alignment):
    counts[4, :] = 0
    totals = check_counts(counts, alignment=alignment, layer=None, allow_empty=True)
    assert totals[4] == 0


def test_shape_mismatch_rejected(counts, alignment):
    with pytest.raises(ValueError, match="columns"):
        check_counts(counts[:, :10], alignment=alignment, layer=None)


def test_to_csr_matrix_passthrough_and_conversion(counts):
    X = sp.csr_matrix(counts)
    assert to_csr_matrix(X) is X
    converted = to_csr_matrix(sp.csc_array(counts.astype(np.float64)))
    assert type(converted) is sp.csr_matrix
    assert converted.dtype == np.float32
    np.testing.assert_array_equal(converted.toarray(), counts)
    assert type(to_csr_matrix(counts[:3])) is sp.csr_matrix


def test_streamed_checks_refuse_a_bad_chunk_before_yielding_its_cells(counts, alignment):
    from xtrimogene_sc.data import iter_batches
    from xtrimogene_sc.data._checks import CountCheck

    X = counts.astype(np.float64)
    X[5, 1] = 2.5  # a non-integer value in the third chunk of two rows
    check = CountCheck(X, alignment=alignment, layer=None)
    batches = iter_batches(X, alignment.var_to_position, batch_size=2, chunk_size=2,
                           progress=False, check=check)  # fmt: skip
    seen = [row for _ in range(2) for row in next(batches)[0].tolist()]
    assert sorted(seen) == [0, 1, 2, 3]  # the chunks before the bad one
    with pytest.raises(ValueError, match=r"adata\.X contains 1 non-integer values"):
        next(batches)  # the bad chunk is refused before any of its cells is yielded


def test_streamed_checks_name_the_empty_cell_by_its_row(counts, alignment):
    from xtrimogene_sc.data import iter_batches
    from xtrimogene_sc.data._checks import CountCheck

    X = counts.copy()
    X[7] = 0
    check = CountCheck(X, alignment=alignment, layer=None)
    with pytest.raises(ValueError, match=r"1 cells have zero counts.*\[7\]"):
        list(iter_batches(X, alignment.var_to_position, batch_size=4, chunk_size=3,
                          progress=False, check=check))  # fmt: skip


def test_embedding_reads_the_counts_once(monkeypatch, trained_tiny_model, tiny_adata):
    """The embedding path checks the counts while it reads them, not in a pass of its own."""
    from xtrimogene_sc.data._checks import CountCheck

    def second_pass(*args, **kwargs):
        raise AssertionError("the embedding read the whole matrix to check it first")

    monkeypatch.setattr(CountCheck, "check_all", second_pass)
    latent = trained_tiny_model.get_latent_representation(tiny_adata, progress=False)
    assert latent.shape[0] == tiny_adata.n_obs
    bad = tiny_adata.copy()
    bad.X = sp.csr_matrix(bad.X, dtype=np.float32)
    bad.X.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        trained_tiny_model.get_latent_representation(bad, progress=False)
