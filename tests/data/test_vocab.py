from __future__ import annotations

import hashlib
import json
import warnings
from importlib.resources import files

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data import GeneAlignment, GeneVocab

VOCAB_SHA256 = "bb337ea195d94e7b033543abc02a42e7060d6562eba97deb077f7dcecec62661"


@pytest.fixture(scope="module")
def vocab() -> GeneVocab:
    return GeneVocab.default()


def _plain_symbols(vocab: GeneVocab) -> np.ndarray:
    return np.array([n for n in vocab.names if not n.endswith("__chrM")], dtype=object)


def _quiet_align(vocab: GeneVocab, names, **kwargs) -> GeneAlignment:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return vocab.align(names, **kwargs)


def test_default_vocab_has_19264_unique_names(vocab):
    assert len(vocab) == TOKENS.N_GENES
    assert len(set(vocab.names)) == TOKENS.N_GENES
    assert vocab.names[0] == "A1BG"


def test_shipped_file_and_canonical_text_share_the_sha256(vocab):
    raw = files("xtrimogene_sc.data").joinpath("vocab", "OS_scRNA_gene_index.19264.tsv")
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == VOCAB_SHA256
    assert vocab.sha256 == VOCAB_SHA256


def test_default_is_cached(vocab):
    assert GeneVocab.default() is vocab


def test_tsv_roundtrip_is_byte_identical(vocab, tmp_path):
    path = tmp_path / "vocab.tsv"
    vocab.to_tsv(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == VOCAB_SHA256
    assert GeneVocab.from_tsv(path) == vocab


def test_from_tsv_rejects_index_not_equal_to_row(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("gene_name\tindex\nA\t0\nB\t2\n")
    with pytest.raises(ValueError, match="line 3"):
        GeneVocab.from_tsv(path)


def test_positions_exact_match_only(vocab):
    pos = vocab.positions(["A1BG", "a1bg", "", None, np.nan, "A1CF"])
    np.testing.assert_array_equal(pos, [0, -1, -1, -1, -1, 1])
    assert pos.dtype == np.int64


def test_align_shuffled_subset_with_unknown_genes(vocab):
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(vocab), size=500, replace=False)
    names = np.concatenate([vocab.names[chosen], [f"UNKNOWN{i}" for i in range(50)]])
    order = rng.permutation(len(names))
    alignment = _quiet_align(vocab, list(names[order]))
    expected = np.concatenate([chosen, np.full(50, -1)])[order]
    np.testing.assert_array_equal(alignment.var_to_position, expected)
    assert alignment.n_matched_positions == 500
    assert alignment.observed_positions.sum() == 500
    assert alignment.observed_positions[chosen].all()


def test_align_more_columns_than_vocabulary(vocab):
    # Upstream skips alignment when a dataset has >= 19,264 columns and misreads it.
    rng = np.random.default_rng(1)
    names = np.concatenate([vocab.names, [f"LINC{i:05d}" for i in range(25_000 - len(vocab))]])
    order = rng.permutation(len(names))
    alignment = vocab.align(list(names[order]))
    positions = alignment.var_to_position
    matched = positions >= 0
    assert alignment.n_vars == 25_000
    assert alignment.n_matched_positions == len(vocab)
    np.testing.assert_array_equal(vocab.names[positions[matched]], names[order][matched])
    assert alignment.coverage_vocab == 1.0


def _ensembl_adata(vocab: GeneVocab) -> ad.AnnData:
    symbols = _plain_symbols(vocab)[:300]
    var = pd.DataFrame(
        {"feature_name": pd.Categorical(symbols), "n_cells": np.arange(300)},
        index=[f"ENSG{i:011d}" for i in range(300)],
    )
    return ad.AnnData(var=var)


def test_ensembl_var_names_raise_with_candidate_column(vocab):
    with pytest.raises(ValueError, match="gene_symbols_key") as info:
        vocab.align(_ensembl_adata(vocab))
    assert "'feature_name'" in str(info.value)
    assert "n_cells" not in str(info.value)


def test_gene_symbols_key_resolves_ensembl_data(vocab):
    adata = _ensembl_adata(vocab)
    alignment = _quiet_align(vocab, adata, gene_symbols_key="feature_name")
    assert alignment.n_matched_vars == 300
    np.testing.assert_array_equal(
        vocab.names[alignment.var_to_position], adata.var["feature_name"].astype(str)
    )


def test_low_overlap_raises_with_counts_and_mouse_hint(vocab):
    human = list(_plain_symbols(vocab)[1000:1150])
    titled = [n[0] + n[1:].lower() for n in _plain_symbols(vocab)[2000:]]
    known = set(vocab.names)
    mouse = [n for n in titled if n not in known][:600]
    with pytest.raises(ValueError, match=r"Only 150 of 750 genes \(20\.0%\)") as info:
        vocab.align(human + mouse)
    assert "orthologs" in str(info.value)


def test_too_few_genes_raises(vocab):
    with pytest.raises(ValueError, match="50 distinct genes"):
        vocab.align(list(_plain_symbols(vocab)[:50]))


def test_duplicated_symbols_counted_and_warned_once(vocab):
    names = list(_plain_symbols(vocab)[:200]) + ["A1BG", "A1BG", "A1CF"]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        alignment = vocab.align(names)
    duplicate_warnings = [w for w in record if "summed" in str(w.message)]
    assert duplicate_warnings[0].category is UserWarning
    assert len(duplicate_warnings) == 1
    assert alignment.n_duplicated_vars == 3
    assert alignment.n_matched_vars == 203
    assert alignment.n_matched_positions == 200


def test_low_vocabulary_coverage_warns(vocab):
    with pytest.warns(UserWarning, match="treats the missing genes as zero"):
        vocab.align(list(_plain_symbols(vocab)[:500]))


def test_nan_names_are_unmatched(vocab):
    names = [*_plain_symbols(vocab)[:200], np.nan, ""]
    alignment = _quiet_align(vocab, names)
    assert alignment.var_to_position[-2:].tolist() == [-1, -1]
    np.testing.assert_array_equal(alignment.matched_columns, np.arange(200))


def test_summary_and_to_dict(vocab):
    names = [*_plain_symbols(vocab)[:712], *[f"NOT_A_GENE_{i}" for i in range(53)]]
    alignment = _quiet_align(vocab, names)
    assert alignment.summary() == (
        "matched 712 of 765 genes (93.1%); 712 of 19,264 vocabulary genes measured (3.7%); "
        "0 duplicated symbols summed"
    )
    d = alignment.to_dict()
    assert d["n_matched_vars"] == 712
    assert d["n_matched_by_rule"] == {"exact": 712, "case": 0, "ensembl": 0, "synonym": 0}
    assert json.loads(json.dumps(d)) == d  # fits adata.uns and config files
