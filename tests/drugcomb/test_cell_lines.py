"""Cell-line features from bulk expression: the xTrimoGene bulk embedding feeding the model."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

import xtrimogene_sc as xtg
from xtrimogene_sc.drugcomb import DrugCombinationModel, load_oneil


@pytest.fixture(scope="module")
def untrained_model():
    torch.manual_seed(0)
    return xtg.XTrimoGene(preset="tiny", decoder_mode="masked")


def _tpm_lines(n_vocab: int, n_other: int = 0, seed: int = 0) -> ad.AnnData:
    """Five bulk 'cell lines' of non-integer TPM-like values."""
    rng = np.random.default_rng(seed)
    genes = list(xtg.GeneVocab.default().names[:n_vocab]) + [
        f"NOTAGENE{i}" for i in range(n_other)
    ]
    values = rng.gamma(0.5, 40.0, size=(5, len(genes))).astype(np.float32)
    lines = ad.AnnData(values)
    lines.obs_names = [f"line{i}" for i in range(5)]
    lines.var_names = genes
    return lines


def _embed(lines, model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few vocabulary genes measured
        xtg.tl.embed(lines, model, input_type="bulk", progress=False, **kwargs)


def test_bulk_cell_lines_feed_the_synergy_model(untrained_model):
    lines = _tpm_lines(300)
    _embed(lines, untrained_model)
    width = 4 * untrained_model.config.encoder_dim
    assert lines.obsm["X_xtg"].shape == (5, width)
    assert np.isfinite(lines.obsm["X_xtg"]).all()
    assert lines.uns["X_xtg"]["params"]["input_type"] == "bulk"
    drugs = pd.DataFrame(np.eye(4, dtype=np.float32), index=list("ABCD"))
    rows = pd.DataFrame(
        [(a, b, c, float((i + j) % 2)) for i, a in enumerate("ABCD") for j, b in enumerate("ABCD")
         if i < j for c in lines.obs_names],
        columns=["drug_a", "drug_b", "cell_line", "label"],
    )  # fmt: skip
    model = DrugCombinationModel(drugs, lines, cell_key="X_xtg", hidden_dim=16, drug_dim=4)
    model.train(rows, max_epochs=2, validation_size=0)
    assert model.predict(rows).shape == (len(rows),)


def test_cell_lines_with_too_few_vocabulary_genes_are_refused(untrained_model):
    lines = _tpm_lines(150, n_other=850)  # 15% of the columns are vocabulary genes
    with pytest.raises(
        ValueError, match=r"Only 150 of 1,000 genes \(15.0%\) match the 19,264-gene"
    ):
        _embed(lines, untrained_model)


def test_z_scores_are_not_expression(untrained_model):
    lines = _tpm_lines(300)
    lines.X = (lines.X - lines.X.mean(axis=0)) / lines.X.std(axis=0)
    with pytest.raises(ValueError, match="negative values"):
        _embed(lines, untrained_model)


def test_the_oneil_tpm_table_embeds_in_bulk_mode(oneil_dir, untrained_model):
    data = load_oneil(oneil_dir, scope="deepdds")
    cells = data.expression
    assert (cells.var["in_scfoundation_vocab"]).all()
    _embed(cells, untrained_model)
    assert cells.obsm["X_xtg"].shape == (31, 4 * untrained_model.config.encoder_dim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match="non-integer values"):  # TPM is not counts
            untrained_model.get_latent_representation(cells, progress=False)
