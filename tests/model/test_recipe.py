"""A training recipe: epochs follow from the data size, and it builds and trains a model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import xtrimogene_sc as xtg
from xtrimogene_sc.model import SMALL_DATA_RECIPE, TrainingRecipe


def test_epochs_follow_the_number_of_cells_unless_fixed():
    recipe = TrainingRecipe(steps=100, batch_size=10, min_epochs=None)
    assert recipe.epochs_for(1000, train_size=1.0) == 1  # 100 batches an epoch
    assert recipe.epochs_for(100, train_size=1.0) == 10
    assert recipe.epochs_for(5, train_size=1.0) == 100  # one batch an epoch
    assert TrainingRecipe(epochs=3).epochs_for(10_000) == 3
    # more cells: at least min_epochs passes even when that means more than `steps`
    assert TrainingRecipe(steps=100, batch_size=10, min_epochs=4).epochs_for(1000, 1.0) == 4
    assert TrainingRecipe(steps=100, batch_size=10, min_epochs=4).epochs_for(100, 1.0) == 10
    kwargs = SMALL_DATA_RECIPE.train_kwargs(700)
    assert kwargs["batch_size"] == SMALL_DATA_RECIPE.batch_size
    assert kwargs["max_epochs"] == SMALL_DATA_RECIPE.epochs_for(700)


@pytest.mark.parametrize("max_epochs", [1, 2])
def test_pretrain_builds_the_recipe_model_and_trains_the_epochs_asked(tiny_adata, max_epochs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(tiny_adata)
    recipe = TrainingRecipe(mask_ratio_nonzero=0.4, batch_size=64)
    model = recipe.pretrain(tiny_adata, max_epochs=max_epochs, enable_progress_bar=False)
    assert model.is_trained
    assert model.config.objective.mask_ratio_nonzero == 0.4
    assert model.config.decoder_mode == recipe.decoder_mode
    assert len(model.history["validation_loss"]) == max_epochs


def test_the_recipe_replaces_the_presets_encoder_depth_only_when_asked(tiny_adata):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(tiny_adata)
    preset_depth = xtg.XTrimoGeneConfig.preset("tiny").encoder_depth
    assert preset_depth == 2
    for recipe, depth in [
        (SMALL_DATA_RECIPE, 1),
        (TrainingRecipe(), preset_depth),  # another recipe keeps its preset's architecture
        (TrainingRecipe(encoder_depth=3), 3),
    ]:
        model = xtg.XTrimoGene(tiny_adata, preset=recipe.preset, **recipe.config_overrides())
        assert model.config.encoder_depth == depth
        assert len(model.module.encoder_blocks) == depth


def test_the_recipe_sets_the_encoder_width_and_read_out_query_when_asked(tiny_adata, tmp_path):
    """A tied, narrower recipe model trains, embeds at its width, and survives save and load
    with its read-out (gain and running centre) intact."""
    assert "encoder_dim" not in SMALL_DATA_RECIPE.config_overrides()  # the preset's width
    recipe = TrainingRecipe(encoder_dim=32, cell_reconstruction_query="tied", n_top_genes=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(tiny_adata)
        model = recipe.pretrain(tiny_adata, max_epochs=1, enable_progress_bar=False)
    assert model.config.encoder_dim == 32
    assert model.module.gene_embedding.weight.shape[1] == 32
    assert model.config.objective.cell_reconstruction_query == "tied"
    assert float(model.module.cell_gain) != 1.0  # trained
    embedding = model.get_latent_representation(pooling="mean", progress=False)
    assert embedding.shape == (tiny_adata.n_obs, 32)
    model.save(tmp_path / "tied")
    loaded = xtg.XTrimoGene.load(tmp_path / "tied", adata=tiny_adata)
    assert loaded.config.objective.cell_reconstruction_query == "tied"
    torch.testing.assert_close(loaded.module.cell_gain, model.module.cell_gain)
    torch.testing.assert_close(
        loaded.module.cell_norm.running_mean, model.module.cell_norm.running_mean
    )
    np.testing.assert_allclose(
        loaded.get_latent_representation(pooling="mean", progress=False), embedding, atol=1e-6
    )


def test_a_recipe_model_embeds_with_the_recipes_pooling_by_default_even_after_saving(
    tiny_adata, tmp_path
):
    """``tl.embed(adata, model)`` must not fall back to the depth-carrying ``concat`` for a
    model whose recipe was measured with ``mean``; the choice survives save and load."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(tiny_adata)
        model = SMALL_DATA_RECIPE.pretrain(tiny_adata, max_epochs=1, enable_progress_bar=False)
    assert model.default_pooling == SMALL_DATA_RECIPE.pooling == "mean"
    mean = model.get_latent_representation(pooling="mean", progress=False)
    assert (model.get_latent_representation(progress=False) == mean).all()
    xtg.tl.embed(tiny_adata, model, progress=False)
    assert (tiny_adata.obsm["X_xtg"] == mean).all()
    assert tiny_adata.uns["X_xtg"]["params"]["pooling"] == "mean"
    model.save(tmp_path / "m")
    loaded = xtg.XTrimoGene.load(tmp_path / "m", adata=tiny_adata)
    assert loaded.default_pooling == "mean"
    assert (loaded.get_latent_representation(progress=False) == mean).all()
    query = xtg.XTrimoGene.load_query_data(tiny_adata.copy(), model)
    assert query.default_pooling == "mean"
