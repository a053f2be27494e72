from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

import xtrimogene_sc as xtg
from xtrimogene_sc.model import load_query_data


def _query(n_obs: int = 120):
    """Cells with the genes the session model was trained on (same seed and n_vars)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = xtg.datasets.synthetic_counts(n_obs=300, n_vars=400, seed=1)
    return data[-n_obs:].copy()


class _ModeProbe(Callback):
    """Records whether the torch module is in training mode at every training batch."""

    def __init__(self) -> None:
        self.modes: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.modes.append(pl_module.module.training)


def test_query_freeze_all_embeds_like_the_reference(trained_tiny_model):
    query = _query()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapped = load_query_data(query, trained_tiny_model)
        expected = trained_tiny_model.get_latent_representation(query, progress=False)
        got = mapped.get_latent_representation(progress=False)
    assert mapped.trainable_parameters_ == []
    assert not any(p.requires_grad for p in mapped.module.parameters())
    assert mapped.adata is query
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the reference model keeps its trainable weights
    assert all(p.requires_grad for p in trained_tiny_model.module.parameters())


def test_query_layer_norm_training_changes_only_layer_norms(trained_tiny_model):
    query = _query()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapped = load_query_data(query, trained_tiny_model, freeze="layer_norm")
    assert not mapped.module.training  # loaded in eval mode: the scvi 1.4.2 trap
    before = {k: v.clone() for k, v in mapped.module.state_dict().items()}
    trainable = set(mapped.trainable_parameters_)
    assert trainable
    assert all("norm" in name for name in trainable)
    probe = _ModeProbe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapped.train(max_epochs=1, batch_size=32, lr=1e-2, callbacks=[probe],
                     enable_progress_bar=False, enable_checkpointing=False, logger=False)  # fmt: skip
    assert probe.modes
    assert all(probe.modes)
    after = mapped.module.state_dict()
    params = dict(mapped.module.named_parameters())
    for name in params:
        if name in trainable:
            continue
        assert torch.equal(before[name], after[name]), f"frozen weight {name} changed"
    assert any(not torch.equal(before[n], after[n]) for n in trainable)


def test_query_from_directory_and_bad_policy(trained_tiny_model, tmp_path):
    trained_tiny_model.save(tmp_path / "ref")
    query = _query(60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapped = load_query_data(query, tmp_path / "ref")
    reference_state = trained_tiny_model.module.state_dict()
    for name, value in mapped.module.state_dict().items():
        assert torch.equal(value, reference_state[name])
    with pytest.raises(ValueError, match="freeze must be"):
        load_query_data(_query(60), trained_tiny_model, freeze="everything")


def test_query_that_is_a_copy_of_registered_data_is_set_up_anew(trained_tiny_model):
    copied = trained_tiny_model.adata[:50].copy()  # carries the original's registration id
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapped = load_query_data(copied, trained_tiny_model)
        assert mapped.get_latent_representation(progress=False).shape[0] == 50
    assert mapped.adata is copied


def test_training_a_fully_frozen_query_model_says_why(trained_tiny_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mapped = load_query_data(_query(60), trained_tiny_model)
    with pytest.raises(ValueError, match="frozen"):
        mapped.train(max_epochs=1)
