"""Genes named as users have them: old symbols, aliases and Ensembl IDs map onto the vocabulary."""

from __future__ import annotations

import gzip
import logging
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import xtrimogene_sc as xtg
from xtrimogene_sc.data import read_counts
from xtrimogene_sc.data._synonyms import resolve_symbol, synonym_table

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
VOCAB = xtg.GeneVocab.default()
BASE = [n for n in VOCAB.names[:400] if str(n).isalnum()][:300]  # enough genes to align


def _align(names: list[str], **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # low vocabulary coverage
        return VOCAB.align([*BASE, *names], **kwargs)


def _position(alignment, column: int) -> str | None:
    pos = alignment.var_to_position[len(BASE) + column]
    return None if pos < 0 else str(VOCAB.names[pos])


def test_old_symbols_map_to_their_current_gene_and_are_recorded():
    alignment = _align(["MARCH8", "SEPT7", "H3F3A", "KIAA0101"])
    assert [_position(alignment, i) for i in range(4)] == ["MARCHF8", "SEPTIN7", "H3-3A", "PCLAF"]
    assert alignment.rule_counts()["synonym"] == 4
    assert "MARCH8->MARCHF8" in alignment.examples["synonym"]
    assert "4 by synonym (e.g. MARCH8->MARCHF8" in alignment.summary()


def test_the_same_renaming_is_reported_once_then_only_at_debug_level(caplog):
    names = ["MARCH9", "SEPT9", "ENSG00000111640"]  # a set no other test aligns
    with caplog.at_level(logging.DEBUG, logger="xtrimogene_sc.data._vocab"):
        for _ in range(3):
            _align(names)
    levels = [r.levelno for r in caplog.records if "matched by other names" in r.getMessage()]
    assert levels == [logging.INFO, logging.DEBUG, logging.DEBUG]


def test_ensembl_ids_map_with_or_without_version_and_no_symbols_column():
    alignment = _align(["ENSG00000141510.17", "ENSG00000111640"])
    assert [_position(alignment, 0), _position(alignment, 1)] == ["TP53", "GAPDH"]
    assert alignment.rule_counts()["ensembl"] == 2


def test_an_exact_symbol_always_wins_over_a_synonym():
    # ACAT1 is a vocabulary gene and also an old alias of SOAT1
    alignment = _align(["ACAT1"])
    assert _position(alignment, 0) == "ACAT1"
    assert alignment.rule_counts()["synonym"] == 0


def test_a_synonym_of_a_gene_the_data_already_has_is_left_out():
    alignment = _align(["MARCHF8", "MARCH8"])
    assert _position(alignment, 0) == "MARCHF8"
    assert _position(alignment, 1) is None
    assert alignment.n_duplicated_vars == 0  # not summed into the current symbol's column


def test_two_columns_naming_one_gene_by_synonyms_are_both_left_out():
    aliases = [n for n, s in synonym_table()["alias"].items() if s == "SEPTIN7"][:2]
    assert len(aliases) == 2
    alignment = _align(aliases)
    assert _position(alignment, 0) is None
    assert _position(alignment, 1) is None


def test_ambiguous_aliases_are_never_used():
    # '12-LOX' names ALOX12 and ALOX15, '10q23del' BMPR1A and PTEN (NCBI aliases)
    assert "12-LOX" not in synonym_table()["alias"]
    alignment = _align(["12-LOX", "10q23del"])
    assert _position(alignment, 0) is None
    assert _position(alignment, 1) is None


def test_strict_matches_exact_symbols_only():
    alignment = _align(["MARCH8", "ENSG00000141510", "cd4"], strict=True)
    assert [_position(alignment, i) for i in range(3)] == [None, None, None]
    assert alignment.rule_counts() == {"exact": 300, "case": 0, "ensembl": 0, "synonym": 0}


def test_count_shares_by_rule_are_recorded_at_setup():
    names = [*BASE, "MARCH8", "NOT_A_GENE"]
    X = np.ones((4, len(names)), dtype=np.float32)
    X[:, -2] = 5.0  # MARCH8 holds 5 of every cell's 306 counts
    adata = ad.AnnData(sp.csr_matrix(X), var=pd.DataFrame(index=names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.pp.check_input(adata)
    record = adata.uns["xtg"]["alignment"]
    assert record["n_matched_by_rule"]["synonym"] == 1
    assert record["count_share"]["synonym"] == pytest.approx(5 / 306)
    assert record["count_share"]["unmatched"] == pytest.approx(1 / 306)
    assert record["count_share"]["exact"] == pytest.approx(300 / 306)
    counts = read_counts(adata)
    assert counts.count_share()["synonym"] == 0.0  # nothing read yet


def test_resolve_symbol_follows_the_same_rules():
    assert resolve_symbol("MARCH8", VOCAB.positions, VOCAB.names) == "MARCHF8"
    assert resolve_symbol("ENSG00000141510.4", VOCAB.positions, VOCAB.names) == "TP53"
    assert resolve_symbol("ACAT1", VOCAB.positions, VOCAB.names) == "ACAT1"
    assert resolve_symbol("NOT_A_GENE", VOCAB.positions, VOCAB.names) is None


@pytest.mark.skipif(not (SHARED / "genes").exists(), reason="staged gene synonyms not found")
def test_the_shipped_table_is_the_staged_sources_unambiguous_names():
    staged = pd.read_csv(SHARED / "genes" / "human_gene_synonyms.tsv.gz", sep="\t",
                         dtype=str, keep_default_na=False)  # fmt: skip
    staged = staged[staged["n_targets"] == "1"]
    shipped = {(n, s, kind) for kind, table in synonym_table().items() for n, s in table.items()}
    assert shipped == set(map(tuple, staged[["name", "vocabulary_symbol", "kind"]].to_numpy()))
    package = Path(xtg.__file__).parent / "data" / "vocab" / "gene_synonyms.tsv.gz"
    assert package.stat().st_size < 600_000  # a few hundred kB
    with gzip.open(package, "rt") as fh:
        assert fh.readline() == "name\tvocabulary_symbol\tkind\n"


@pytest.mark.parametrize(
    ("path", "recovered"),
    [
        ("annotation/zheng2017_sorted_pbmc.h5ad", 492),
        ("perturbation/kang2018_pbmc_ifnb_scgen_valid.h5ad", 350),
        ("perturbation_genetic/papalexi2021_thp1_eccite_lowmoi.h5ad", 10),
    ],
)
def test_renamed_genes_of_the_staged_files_are_recovered(path, recovered):
    if not (SHARED / path).exists():
        pytest.skip(f"{path} not staged")
    adata = ad.read_h5ad(SHARED / path, backed="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        strict = VOCAB.align(adata, strict=True)
        alignment = VOCAB.align(adata)
    adata.file.close()
    assert alignment.rule_counts()["synonym"] == recovered
    assert alignment.n_matched_vars == strict.n_matched_vars + recovered
    exact = alignment.match_rule == 1
    np.testing.assert_array_equal(alignment.var_to_position[exact], strict.var_to_position[exact])


def test_files_that_use_current_symbols_only_are_aligned_and_embedded_as_before():
    from xtrimogene_sc.data import tokenize_counts

    adata = xtg.datasets.synthetic_counts(n_obs=12, n_vars=300, density=0.3, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        strict = VOCAB.align(adata, strict=True)  # exact symbols only: the old matching
        default = VOCAB.align(adata)
    assert strict.n_matched_vars == adata.n_vars  # every name is a current symbol
    np.testing.assert_array_equal(default.var_to_position, strict.var_to_position)
    old, new = (tokenize_counts(adata.X, a.var_to_position) for a in (strict, default))
    for name in ("crow", "pos", "value", "depth_t", "depth_s"):  # the model's whole input
        assert np.array_equal(getattr(old, name).numpy(), getattr(new, name).numpy()), name
