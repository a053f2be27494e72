"""The optional cell-level loss (``contrastive_weight``): off by default, additive when on."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from xtrimogene_sc.data._tokenize import tokenize_counts
from xtrimogene_sc.module import XTrimoGeneConfig, XTrimoGeneModule


def _cells(n_cells=8, n_genes=300, seed=0):
    rng = np.random.default_rng(seed)
    x = sp.random(n_cells, n_genes, density=0.2, format="csr", random_state=seed,
                  data_rvs=lambda n: rng.integers(1, 20, n)).astype(np.float32)  # fmt: skip
    return tokenize_counts(x, np.arange(50, 50 + n_genes))


def _module(tiny_config, weight, state=None):
    torch.manual_seed(0)
    m = XTrimoGeneModule(replace(tiny_config, contrastive_weight=weight)).eval()
    if state is not None:
        m.load_state_dict(state, strict=False)
    return m


def test_off_by_default_and_absent_from_the_state_dict(tiny_config):
    m = XTrimoGeneModule(tiny_config)
    assert m.contrastive_head is None
    assert not any(k.startswith("contrastive_head") for k in m.state_dict())


def test_loss_adds_the_weighted_cell_term(tiny_config):
    cells = _cells()
    on = _module(tiny_config, 1.0)
    state = on.state_dict()
    off, double = _module(tiny_config, 0.0, state), _module(tiny_config, 2.0, state)

    def loss(m):
        return m(cells, generator=torch.Generator().manual_seed(3)).loss

    with torch.no_grad():
        base, one, two = loss(off), loss(on), loss(double)
    term = one - base
    assert term > 0  # InfoNCE is positive
    torch.testing.assert_close(two - base, 2 * term)


def test_gradients_reach_the_projection_head_and_the_encoder(tiny_config):
    cells = _cells()
    on = _module(tiny_config, 1.0)
    off = _module(tiny_config, 0.0, on.state_dict())
    for m in (on, off):
        m(cells, generator=torch.Generator().manual_seed(3)).loss.backward()
    assert on.contrastive_head[0].weight.grad.abs().sum() > 0
    grad_on = on.encoder_blocks[0].ff[0].weight.grad
    grad_off = off.encoder_blocks[0].ff[0].weight.grad
    assert not torch.allclose(grad_on, grad_off)  # the cell term trains the encoder too


def test_embeddings_do_not_use_the_head(tiny_config):
    cells = _cells()
    on = _module(tiny_config, 1.0)
    off = _module(tiny_config, 0.0, on.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(on.embed_cells(cells, "mean"), off.embed_cells(cells, "mean"))


@pytest.mark.parametrize(
    ("field", "value"), [("contrastive_weight", -0.1), ("contrastive_temperature", 0.0)]
)
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        XTrimoGeneConfig(**{field: value})


def test_config_round_trip_rebuilds_the_head(tiny_config):
    config = replace(tiny_config, contrastive_weight=0.5, contrastive_temperature=0.2)
    again = XTrimoGeneConfig.from_dict(config.to_dict())
    assert again == config
    assert XTrimoGeneModule(again).contrastive_head is not None


def test_downsampled_cells_keep_a_share_of_each_cells_counts():
    rng = np.random.default_rng(1)
    x = sp.random(6, 400, density=0.3, format="csr", random_state=1,
                  data_rvs=lambda n: rng.integers(1, 50, n)).astype(np.float32)  # fmt: skip
    cells = tokenize_counts(x, np.arange(400))
    same = cells.downsampled(torch.ones(6))  # rate 1 gives the cells back
    torch.testing.assert_close(same.value, cells.value)
    torch.testing.assert_close(same.depth_s, cells.depth_s)
    assert torch.equal(same.crow, cells.crow)
    rate = torch.tensor([0.1, 0.2, 0.4, 0.6, 0.8, 0.9])
    thin = cells.downsampled(rate, torch.Generator().manual_seed(0))
    torch.testing.assert_close(thin.depth_s, cells.depth_s + torch.log10(rate))
    assert bool((thin.crow.diff() <= cells.crow.diff()).all())
    assert thin.crow.diff()[0] < cells.crow.diff()[0]  # 10% of the depth loses genes
    # counts recovered from the new values sum to about rate * depth
    rows = thin.row_ids()
    counts = torch.expm1(thin.value.double()) * torch.pow(10.0, thin.depth_s.double())[rows] / 1e4
    totals = torch.zeros(6, dtype=torch.float64).index_add_(0, rows, counts)
    expected = torch.pow(10.0, thin.depth_s.double())
    assert bool(((totals - expected).abs() < 0.25 * expected + 5).all())
    assert bool((counts - counts.round()).abs().max() < 1e-3)  # whole counts


@pytest.mark.parametrize("view", ["sample", "thin"])
def test_both_views_train_without_depth_tokens_even_on_one_gene_cells(tiny_config, view):
    x = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 2, 1, 0], [1, 1, 1, 1]], dtype=np.float32))
    cells = tokenize_counts(x, np.arange(10, 14))
    config = replace(tiny_config, use_depth_tokens=False, contrastive_weight=1.0,
                     contrastive_view=view)  # fmt: skip
    torch.manual_seed(0)
    m = XTrimoGeneModule(config).train()
    for step in range(10):
        loss = m(cells, generator=torch.Generator().manual_seed(step)).loss
        loss.backward()
        assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_unknown_view_is_refused():
    with pytest.raises(ValueError, match="contrastive_view"):
        XTrimoGeneConfig(contrastive_view="crop")
