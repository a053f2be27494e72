"""The user-facing gene panel: chosen by name, kept through save/load, clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import xtrimogene_sc as xtg
from xtrimogene_sc.model import TrainingRecipe


@pytest.fixture
def registered(tiny_adata):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(tiny_adata)
    return tiny_adata


def test_highly_variable_genes_are_vocabulary_columns_in_var_order(registered):
    genes = xtg.pp.highly_variable_genes(registered, 50)
    assert len(genes) == 50
    order = [list(registered.var_names).index(g) for g in genes]
    assert order == sorted(order)
    everything = xtg.pp.highly_variable_genes(registered, 10_000)
    assert everything == [str(g) for g in registered.var_names]  # fewer genes than asked: all
    with pytest.raises(ValueError, match="positive"):
        xtg.pp.highly_variable_genes(registered, 0)


def test_highly_variable_genes_leave_out_genes_outside_the_vocabulary():
    from xtrimogene_sc.data import GeneVocab

    adata = xtg.datasets.pbmc68k_counts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        alignment = GeneVocab.default().align(adata)
        genes = xtg.pp.highly_variable_genes(adata, 100_000)
    assert "NEAT1" in adata.var_names  # a lncRNA, not in the vocabulary by any name
    assert "NEAT1" not in genes
    assert "IGJ" in genes  # JCHAIN's previous symbol: in the vocabulary by another name
    assert len(genes) == alignment.n_matched_vars


def test_panel_is_kept_through_save_and_load_and_used_on_new_data(registered, tmp_path):
    genes = list(registered.var_names[::2])
    model = xtg.XTrimoGene(registered, preset="tiny", input_genes=genes)
    panel = model.config.input_positions
    assert len(panel) == len(genes)
    assert "panel of 200 genes" in model._model_summary_string
    before = model.get_latent_representation(pooling="mean", progress=False)
    model.save(tmp_path / "m")
    loaded = xtg.XTrimoGene.load(tmp_path / "m", adata=registered)
    assert loaded.config.input_positions == panel
    np.testing.assert_allclose(
        loaded.get_latent_representation(pooling="mean", progress=False), before, atol=1e-6
    )


def test_panel_errors_say_what_to_pass(registered):
    with pytest.raises(ValueError, match="not columns of the AnnData"):
        xtg.XTrimoGene(registered, input_genes=["NOT_A_GENE", registered.var_names[0]])
    with pytest.raises(ValueError, match="pass the AnnData"):
        xtg.XTrimoGene(None, input_genes=["CD3E"])
    with pytest.raises(ValueError, match="at least one gene"):
        xtg.XTrimoGene(registered, input_genes=[])


def test_recipe_reads_the_top_genes_only_when_there_are_more(registered):
    recipe = TrainingRecipe(n_top_genes=200, batch_size=64)
    model = recipe.pretrain(registered, max_epochs=1, enable_progress_bar=False)
    assert len(model.config.input_positions) == 200
    assert TrainingRecipe(n_top_genes=10_000).input_genes(registered) is None
    assert TrainingRecipe(n_top_genes=None).input_genes(registered) is None


def _blank_in_panel(registered, cell: int):
    """A registered copy where ``cell`` has no counts in the first 5 genes, and a 5-gene panel model."""
    data = registered.copy()
    X = data.X.tolil()
    X[cell, :5] = 0
    data.X = X.tocsr()
    data.X.eliminate_zeros()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(data)
    return data, xtg.XTrimoGene(data, preset="tiny", input_genes=list(data.var_names[:5]))


def test_cells_without_panel_counts_are_refused_clearly(registered):
    data, model = _blank_in_panel(registered, cell=3)  # cell 3 expresses no panel gene
    with pytest.raises(ValueError, match=r"gene panel of 5 genes \(first obs indices: \[3"):
        model.get_latent_representation(progress=False)


def test_a_classifier_on_a_panel_backbone_refuses_cells_it_cannot_see(registered):
    from xtrimogene_sc.model import XTrimoGeneClassifier

    data, backbone = _blank_in_panel(registered, cell=2)
    classifier = XTrimoGeneClassifier(backbone, hidden_dim=8)
    with pytest.raises(ValueError, match=r"gene panel of 5 genes \(first obs indices: \[2"):
        classifier.train(data, labels_key="labels", max_epochs=1)


@pytest.mark.parametrize(
    ("view", "contrastive"), [("sample", 1.0), ("thin", 1.0), ("sample", 0.0)]
)
def test_a_recipe_with_the_cell_level_losses_trains_saves_and_reloads(
    registered, tmp_path, view, contrastive
):
    recipe = TrainingRecipe(
        n_top_genes=None, contrastive_weight=contrastive, contrastive_view=view
    )
    assert recipe.cell_reconstruction_weight > 0  # the recipe's default
    model = recipe.pretrain(registered, max_epochs=2, enable_progress_bar=False,
                            enable_checkpointing=False)  # fmt: skip
    assert model.module.cell_query is not None
    assert (model.module.contrastive_head is not None) == (contrastive > 0)
    assert np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()
    before = model.get_latent_representation(pooling="mean", progress=False)
    model.save(tmp_path / "m")
    again = xtg.XTrimoGene.load(tmp_path / "m", registered)
    assert again.module.config.objective.contrastive_view == view
    np.testing.assert_allclose(
        again.get_latent_representation(pooling="mean", progress=False), before, atol=1e-5
    )
