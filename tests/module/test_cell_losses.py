"""The optional cell-level losses (``contrastive_weight``, ``cell_reconstruction_weight``): off by
default and absent from the state dict, additive when on, training the encoder."""

from __future__ import annotations

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


CELL_LOSSES = {
    "contrastive_weight": "contrastive_head",
    "cell_reconstruction_weight": "cell_query",
}


def _module(tiny_config, weight, state=None, field="contrastive_weight"):
    torch.manual_seed(0)
    m = XTrimoGeneModule(tiny_config.replace(**{field: weight})).eval()
    if state is not None:
        m.load_state_dict(state, strict=False)
    return m


@pytest.mark.parametrize(("field", "head"), CELL_LOSSES.items())
def test_off_by_default_and_absent_from_the_state_dict(tiny_config, field, head):
    m = XTrimoGeneModule(tiny_config)
    assert getattr(m, head) is None
    assert not any(k.startswith(head) for k in m.state_dict())
    on = _module(tiny_config, 1.0, field=field)
    assert any(k.startswith(head) for k in on.state_dict())


@pytest.mark.parametrize("field", CELL_LOSSES)
def test_loss_adds_the_weighted_cell_term(tiny_config, field):
    cells = _cells()
    on = _module(tiny_config, 1.0, field=field)
    state = on.state_dict()
    off = _module(tiny_config, 0.0, state, field)
    double = _module(tiny_config, 2.0, state, field)

    def run(m):
        return m(cells, generator=torch.Generator().manual_seed(3))

    with torch.no_grad():
        outs = [run(m) for m in (off, on, double)]
    base, one, two = (out.loss for out in outs)
    term = one - base
    assert term > 0  # InfoNCE and a squared error are positive
    torch.testing.assert_close(two - base, 2 * term)
    for out in outs:  # the masked regression alone, what get_reconstruction_error reports
        torch.testing.assert_close(out.masked_mse, base)


@pytest.mark.parametrize(("field", "head"), CELL_LOSSES.items())
def test_gradients_reach_the_head_and_the_encoder(tiny_config, field, head):
    cells = _cells()
    on = _module(tiny_config, 1.0, field=field)
    off = _module(tiny_config, 0.0, on.state_dict(), field)
    for m in (on, off):
        m(cells, generator=torch.Generator().manual_seed(3)).loss.backward()
    assert getattr(on, head)[0].weight.grad.abs().sum() > 0
    grad_on = on.encoder_blocks[0].ff[0].weight.grad
    grad_off = off.encoder_blocks[0].ff[0].weight.grad
    assert not torch.allclose(grad_on, grad_off)  # the cell term trains the encoder too


@pytest.mark.parametrize("field", CELL_LOSSES)
def test_embeddings_do_not_use_the_head(tiny_config, field):
    cells = _cells()
    on = _module(tiny_config, 1.0, field=field)
    off = _module(tiny_config, 0.0, on.state_dict(), field)
    with torch.no_grad():
        torch.testing.assert_close(on.embed_cells(cells, "mean"), off.embed_cells(cells, "mean"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("contrastive_weight", -0.1),
        ("contrastive_temperature", 0.0),
        ("cell_reconstruction_weight", -1.0),
        ("cell_reconstruction_weight", float("nan")),
    ],
)
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        XTrimoGeneConfig().replace(**{field: value})


def test_config_round_trip_rebuilds_the_head(tiny_config):
    config = tiny_config.replace(contrastive_weight=0.5, contrastive_temperature=0.2)
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


def test_cell_reconstruction_trains_on_a_batch_of_one_cell(tiny_config):
    config = tiny_config.replace(cell_reconstruction_weight=1.0)
    m = XTrimoGeneModule(config).train()
    loss = m(_cells(n_cells=1), generator=torch.Generator().manual_seed(0)).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert m.cell_query[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("view", ["sample", "thin"])
def test_both_views_train_without_depth_tokens_even_on_one_gene_cells(tiny_config, view):
    x = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 2, 1, 0], [1, 1, 1, 1]], dtype=np.float32))
    cells = tokenize_counts(x, np.arange(10, 14))
    config = tiny_config.replace(use_depth_tokens=False, contrastive_weight=1.0,
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
        XTrimoGeneConfig().replace(contrastive_view="crop")


def test_cell_reconstruction_scores_every_measured_panel_gene_from_the_pooled_cell(tiny_config):
    """The term is the mean squared error over cells x scorable genes, zeros included, of the
    scaled dot product of the pooled, batch-normalised cell with each gene's query plus its
    offset."""
    cells = _cells(n_cells=4, n_genes=40)
    observed = torch.zeros(19264, dtype=torch.bool)
    observed[50:90] = True
    cells = cells.with_observed(observed)
    m = _module(tiny_config, 1.0, field="cell_reconstruction_weight")
    enc = m.encode(cells)
    with torch.no_grad():
        term = m._cell_reconstruction_loss(enc, cells, observed)
        query = m.cell_query(m.gene_embedding(torch.arange(50, 90)))
        pooled = m.cell_norm(m.embed_cells(cells, "mean"))
        prediction = pooled @ query[:, :-1].T / pooled.shape[1] ** 0.5 + query[:, -1]
        dense = torch.zeros(4, 40)
        dense[cells.row_ids(), cells.pos - 50] = cells.value
    torch.testing.assert_close(term, ((prediction - dense) ** 2).mean())
    assert bool((dense == 0).any())  # unexpressed measured genes are scored as zeros


@pytest.mark.parametrize("query", ["mlp", "tied"])
def test_cell_reconstruction_learns_to_predict_profiles(query):
    """After some steps the pooled cell predicts its profile better than each gene's mean over
    the cells does: with two kinds of cells expressing different genes, the embedding must say
    which kind a cell is."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.3, (16, 60)).astype(np.float32)
    counts[:8, :30] += rng.poisson(6.0, (8, 30))
    counts[8:, 30:] += rng.poisson(6.0, (8, 30))
    observed = torch.zeros(19264, dtype=torch.bool)
    observed[50:110] = True
    cells = tokenize_counts(sp.csr_matrix(counts), np.arange(50, 110)).with_observed(observed)
    config = XTrimoGeneConfig.preset(
        "tiny", decoder_mode="masked", use_depth_tokens=False, cell_reconstruction_weight=1.0,
        cell_reconstruction_query=query,
    )  # fmt: skip
    torch.manual_seed(0)
    m = XTrimoGeneModule(config)
    optimiser = torch.optim.Adam(m.parameters(), lr=3e-3)
    dense = torch.zeros(16, 19266)
    dense[cells.row_ids(), cells.pos] = cells.value
    genes = dense[:, 50:110]
    gene_mean_error = float(((genes - genes.mean(0)) ** 2).mean())
    m.train()
    for step in range(150):  # after 60 steps the ratio still ranged 0.3-1.0 over 8 seeds; 0.24 now
        optimiser.zero_grad()
        m(cells, generator=torch.Generator().manual_seed(step)).loss.backward()
        optimiser.step()
    m.eval()
    with torch.no_grad():
        error = float(m._cell_reconstruction_loss(m.encode(cells), cells, observed))
    assert error < 0.5 * gene_mean_error


def _scaled_module(tiny_config, scaled=True):
    config = tiny_config.replace(cell_reconstruction_weight=1.0,
                     cell_reconstruction_scaled=scaled)  # fmt: skip
    torch.manual_seed(0)
    return XTrimoGeneModule(config)


def test_scaled_read_out_keeps_its_gene_statistics_in_the_state_dict(tiny_config):
    keys = {"cell_target_mean", "cell_target_var", "cell_target_batches"}
    assert not keys & set(_scaled_module(tiny_config, scaled=False).state_dict())
    state = _scaled_module(tiny_config).state_dict()
    assert keys <= set(state)
    assert (
        XTrimoGeneConfig().objective.cell_reconstruction_scaled is False
    )  # the reference objective


def test_scaled_read_out_standardises_each_gene_by_running_statistics(tiny_config):
    """The first training batch sets each scored gene's mean and variance; later batches
    average in (equally for the first 100 batches, then by 1% each); evaluation leaves them
    alone; the targets are z-scores, clipped."""
    m = _scaled_module(tiny_config).train()
    scored = torch.tensor([3, 7, 11])
    first = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [1.0, 1.0, 4.0]])
    z = m._scaled_cell_target(first, scored)
    torch.testing.assert_close(m.cell_target_mean[scored], first.mean(0))
    torch.testing.assert_close(m.cell_target_var[scored], first.var(0))
    assert m.cell_target_mean[0] == 0  # unscored genes untouched
    assert m.cell_target_var[0] == 1
    std = first.var(0).clamp_min(0.01).sqrt()  # the constant gene: floored, not divided by 0
    torch.testing.assert_close(z, (first - first.mean(0)) / std)
    second = first + 1.0
    m._scaled_cell_target(second, scored)
    torch.testing.assert_close(m.cell_target_mean[scored], first.mean(0) + 0.5)
    assert int(m.cell_target_batches) == 2
    m.eval()
    before = m.cell_target_mean.clone()
    far = torch.tensor([[0.0, 100.0, 2.0], [2.0, -100.0, 0.0]])
    z = m._scaled_cell_target(far, scored)
    assert torch.equal(m.cell_target_mean, before)
    assert z[0, 1] == 10  # clipped as scanpy's scale(max_value=10)
    assert z[1, 1] == -10


def test_scaled_read_out_trains_and_loads_back(tiny_config):
    cells = _cells()
    m = _scaled_module(tiny_config).train()
    loss = m(cells, generator=torch.Generator().manual_seed(0)).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert int(m.cell_target_batches) == 1
    again = _scaled_module(tiny_config)
    again.load_state_dict(m.state_dict())
    torch.testing.assert_close(again.cell_target_var, m.cell_target_var)


def _tied_module(tiny_config):
    config = tiny_config.replace(cell_reconstruction_weight=1.0, cell_reconstruction_query="tied")
    torch.manual_seed(0)
    return XTrimoGeneModule(config)


def test_tied_read_out_predicts_with_each_genes_own_embedding(tiny_config):
    """Tied: the pooled cell, centred and divided by one spread (running statistics in
    evaluation), dotted with each gene's embedding (the table at unit root-mean-square column
    norm), times one gain, plus an offset from the gene's detached embedding."""
    cells = _cells(n_cells=4, n_genes=40)
    observed = torch.zeros(19264, dtype=torch.bool)
    observed[50:90] = True
    cells = cells.with_observed(observed)
    m = _tied_module(tiny_config).eval()
    m.cell_norm.running_mean.normal_()
    m.cell_norm.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        m.cell_gain.fill_(1.7)
        term = m._cell_reconstruction_loss(m.encode(cells), cells, observed)
        genes = m.gene_embedding(torch.arange(50, 90))
        table = genes / genes.pow(2).sum(0).mean().sqrt()
        pooled = m.embed_cells(cells, "mean") - m.cell_norm.running_mean
        pooled = pooled / (m.cell_norm.running_var.mean() + m.cell_norm.eps).sqrt()
        prediction = 1.7 * pooled @ table.T + m.cell_query(genes)[:, 0]
        dense = torch.zeros(4, 40)
        dense[cells.row_ids(), cells.pos - 50] = cells.value
    torch.testing.assert_close(term, ((prediction - dense) ** 2).mean())
    assert m.cell_query[-1].out_features == 1  # an offset only: no untied query


def test_tied_read_out_has_its_gain_in_the_state_dict_and_trains_every_parameter(tiny_config):
    """Every read-out parameter takes part in the loss (DDP needs it), the gene table gets a
    gradient through the tied query, and the untied default has no gain."""
    mlp = XTrimoGeneModule(tiny_config.replace(cell_reconstruction_weight=1.0))
    assert mlp.cell_gain is None
    assert "cell_gain" not in mlp.state_dict()
    m = _tied_module(tiny_config).train()
    assert "cell_gain" in m.state_dict()
    loss = m(_cells(), generator=torch.Generator().manual_seed(0)).loss
    loss.backward()
    for name in ("cell_gain", "cell_query.0.weight", "cell_query.2.weight"):
        assert m.get_parameter(name).grad.abs().sum() > 0, name
    # the running centre moved towards this batch of pooled cells
    assert m.cell_norm.running_mean.abs().sum() > 0


def test_tied_read_out_trains_on_a_batch_of_one_cell(tiny_config):
    m = _tied_module(tiny_config).train()
    loss = m(_cells(n_cells=1), generator=torch.Generator().manual_seed(0)).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(m.cell_gain.grad)


def test_unknown_cell_query_is_refused():
    with pytest.raises(ValueError, match="cell_reconstruction_query"):
        XTrimoGeneConfig().replace(cell_reconstruction_query="attention")
