"""``compile=``: compiled and eager steps agree, and a missing or failing compiler falls back."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data._tokenize import tokenize_counts
from xtrimogene_sc.module import XTrimoGeneModule
from xtrimogene_sc.module._compile import compiled_blocks, dense_blocks


def _cells(n_cells=6, n_genes=300, seed=0):
    rng = np.random.default_rng(seed)
    x = sp.random(n_cells, n_genes, density=0.1, format="csr", random_state=seed,
                  data_rvs=lambda n: rng.integers(1, 30, n)).astype(np.float32)  # fmt: skip
    return tokenize_counts(x, rng.choice(TOKENS.N_GENES, n_genes, replace=False))


def _step(module, cells):
    """Loss and gradients of one training step with fixed masks."""
    module.zero_grad(set_to_none=True)
    out = module(cells, generator=torch.Generator().manual_seed(3))
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters()}


def _module(tiny_config, mode):
    torch.manual_seed(0)
    return XTrimoGeneModule(tiny_config.replace(decoder_mode=mode, encoder_dropout=0.0)).train()


@pytest.mark.parametrize("mode", ["masked", "full"])
def test_a_compiled_step_gives_the_eager_loss_and_gradients(tiny_config, mode):
    module, cells = _module(tiny_config, mode), _cells()
    eager_loss, eager_grads = _step(module, cells)
    with compiled_blocks(module, enabled=True, backend="aot_eager") as on:
        assert on
        assert all(b._compiled_call_impl is not None for b in dense_blocks(module, decoder=True))
        assert "forward_at" in vars(module.decoder_blocks[-1])
        loss, grads = _step(module, cells)
        other_loss, _ = _step(module, _cells(n_cells=4, seed=1))  # another shape: still runs
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, eager_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert torch.isfinite(other_loss)
    assert all(b._compiled_call_impl is None for b in dense_blocks(module, decoder=True))
    assert "forward_at" not in vars(module.decoder_blocks[-1])


def test_the_inductor_compiled_step_gives_the_eager_loss(tiny_config):
    module, cells = _module(tiny_config, "masked"), _cells()
    eager_loss, _ = _step(module, cells)
    with compiled_blocks(module, enabled=True):
        loss, _ = _step(module, cells)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)


def test_a_block_that_fails_to_compile_runs_eagerly_with_one_warning(tiny_config):
    def broken(graph, example_inputs):
        raise RuntimeError("no C++ compiler on this machine")

    module, cells = _module(tiny_config, "masked"), _cells()
    eager_loss, _ = _step(module, cells)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with compiled_blocks(module, enabled=True, backend=broken):
            loss, _ = _step(module, cells)
            blocks = dense_blocks(module, decoder=True)
            assert all(b._compiled_call_impl is None for b in blocks[:-1])  # each one it ran
            assert "forward_at" not in vars(blocks[-1])  # the last decoder block's masked call
    assert len([w for w in caught if "running eagerly" in str(w.message)]) == 1
    assert torch.equal(loss, eager_loss)


def test_without_torch_compile_the_run_is_eager(tiny_config, monkeypatch):
    def missing(*args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", missing)
    module, cells = _module(tiny_config, "masked"), _cells()
    eager_loss, _ = _step(module, cells)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with compiled_blocks(module, enabled=True) as on:
            loss, _ = _step(module, cells)
    assert not on
    assert any("not available here" in str(w.message) for w in caught)
    assert torch.equal(loss, eager_loss)


def test_compiling_keeps_the_weight_names(tiny_config):
    module = _module(tiny_config, "masked")
    names = list(module.state_dict())
    with compiled_blocks(module, enabled=True, backend="eager"):
        assert list(module.state_dict()) == names
    with compiled_blocks(module, enabled=False) as on:
        assert not on


def test_train_with_compile_runs_eagerly_where_torch_compile_is_missing(monkeypatch):
    import xtrimogene_sc as xtg

    def missing(*args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", missing)
    adata = xtg.datasets.pbmc68k_counts()[:40].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(adata)
        model = xtg.XTrimoGene(adata, preset="tiny", decoder_mode="masked")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.train(max_epochs=1, compile=True, enable_progress_bar=False, logger=False)
    assert model.is_trained_
    assert any("running eagerly" in str(w.message) for w in caught)
    assert all(b._compiled_call_impl is None for b in dense_blocks(model.module, decoder=True))
