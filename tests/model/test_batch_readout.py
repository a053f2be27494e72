"""The whole-profile read-out conditioned on the registered batch (``batch_readout``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import xtrimogene_sc as xtg
from xtrimogene_sc.module import XTrimoGeneConfig

QUIET = {"enable_progress_bar": False, "logger": False, "enable_checkpointing": False}


def _model(tiny_config, adata, *, batch_key: str | None = "batch", **changes) -> xtg.XTrimoGene:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(adata, batch_key=batch_key)
    objective = {"cell_reconstruction_weight": 1.0, "batch_readout": True, **changes}
    return xtg.XTrimoGene(adata, config=tiny_config.replace(**objective))


def test_the_offsets_cover_the_registered_batches_and_only_exist_with_two_or_more(
    tiny_config, tiny_adata
):
    model = _model(tiny_config, tiny_adata)
    assert model.config.objective.n_batches == 2
    assert model.module.cell_batch_offset.weight.shape == (2, 19_264)
    assert not model.module.cell_batch_offset.weight.any()  # starts as the plain read-out
    plain = _model(tiny_config, tiny_adata.copy(), batch_key=None)
    assert plain.config.objective.n_batches == 1
    assert plain.module.cell_batch_offset is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_readout": True}, "cell_reconstruction_weight > 0"),
        ({"cell_reconstruction_weight": 1.0, "n_batches": -1}, "non-negative integer"),
    ],
)
def test_an_impossible_objective_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        XTrimoGeneConfig.preset("tiny", **changes)


def test_training_learns_one_offset_row_per_batch_and_the_batch_reaches_the_loss(
    tiny_config, tiny_adata, one_torch_thread
):
    model = _model(tiny_config, tiny_adata)
    torch.manual_seed(0)
    model.train(max_epochs=1, batch_size=32, **QUIET)
    offsets = model.module.cell_batch_offset.weight.detach()
    assert offsets[0].abs().sum() > 0  # zero at the start: only a batch code moves a row
    assert offsets[1].abs().sum() > 0
    assert not torch.equal(offsets[0], offsets[1])


def test_embeddings_never_read_the_batch(tiny_config, tiny_adata, one_torch_thread):
    model = _model(tiny_config, tiny_adata)
    model.train(max_epochs=1, batch_size=32, **QUIET)
    before = model.get_latent_representation(progress=False)
    with torch.no_grad():
        model.module.cell_batch_offset.weight.normal_()  # offsets are training-only
    np.testing.assert_array_equal(model.get_latent_representation(progress=False), before)


def test_save_and_load_keep_the_offsets(tiny_config, tiny_adata, tmp_path, one_torch_thread):
    model = _model(tiny_config, tiny_adata)
    model.train(max_epochs=1, batch_size=32, **QUIET)
    model.save(tmp_path / "model")
    loaded = xtg.XTrimoGene.load(tmp_path / "model", adata=tiny_adata)
    assert loaded.config.objective.n_batches == 2
    torch.testing.assert_close(
        loaded.module.cell_batch_offset.weight, model.module.cell_batch_offset.weight
    )


def test_a_model_trained_on_other_batches_is_refused_before_training(
    tiny_config, tiny_adata, one_torch_thread
):
    model = _model(tiny_config, tiny_adata)
    more = tiny_adata.copy()
    more.obs["batch"] = np.arange(more.n_obs) % 3  # three batches where the model knows two
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(more, batch_key="batch")
    model = xtg.XTrimoGene(more, config=model.config)  # n_batches kept from the config: 2
    weights = {k: v.clone() for k, v in model.module.state_dict().items()}
    with pytest.raises(ValueError, match="offsets for 2 batches, but the AnnData registers 3"):
        model.train(max_epochs=1, batch_size=32, **QUIET)
    for name, value in model.module.state_dict().items():
        assert torch.equal(value, weights[name]), name


def test_a_query_model_trains_without_the_references_offsets(
    tiny_config, tiny_adata, one_torch_thread
):
    reference = _model(tiny_config, tiny_adata)
    reference.train(max_epochs=1, batch_size=32, **QUIET)
    query = tiny_adata[:120].copy()
    query.obs["batch"] = np.arange(query.n_obs) % 3  # the query's own three batches
    mapped = xtg.XTrimoGene.load_query_data(
        query, reference, freeze="layer_norm", batch_key="batch"
    )
    mapped.train(max_epochs=1, batch_size=32, **QUIET)  # would index past two offset rows
    torch.testing.assert_close(
        mapped.module.cell_batch_offset.weight, reference.module.cell_batch_offset.weight
    )
