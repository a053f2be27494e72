from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data._tokenize import tokenize_counts
from xtrimogene_sc.module import XTrimoGeneConfig, XTrimoGeneModule


def _cells(n_cells=6, n_genes=300, density=0.1, seed=0):
    rng = np.random.default_rng(seed)
    x = sp.random(n_cells, n_genes, density=density, format="csr", random_state=seed,
                  data_rvs=lambda n: rng.integers(1, 30, n)).astype(np.float32)  # fmt: skip
    x = x + sp.csr_matrix((np.ones(n_cells), (np.arange(n_cells), np.arange(n_cells))),
                          shape=x.shape)  # fmt: skip
    return tokenize_counts(x, rng.choice(TOKENS.N_GENES, n_genes, replace=False))


@pytest.fixture(params=["masked", "full"])
def module(request, tiny_config):
    return XTrimoGeneModule(tiny_config.replace(decoder_mode=request.param))


def test_encoder_sees_only_kept_nonzero_genes_plus_depth_tokens(tiny_config):
    m = XTrimoGeneModule(tiny_config)
    cells = _cells()
    keep = torch.rand(cells.pos.numel()) > 0.3
    out = m.encode(cells, keep=keep)
    rows = cells.row_ids()
    for r in range(cells.n_cells):
        expected = cells.pos[(rows == r) & keep].tolist() + [TOKENS.T_POS, TOKENS.S_POS]
        assert out.positions[r][out.valid[r]].tolist() == expected
    assert (out.positions[~out.valid] == TOKENS.PAD_POS).all()


def test_training_forward_backward_reaches_every_parameter(module):
    out = module(_cells())
    assert torch.isfinite(out.loss)
    assert out.n_masked > 0
    out.loss.backward()
    unused = [n for n, p in module.named_parameters() if p.grad is None]
    assert unused == []  # DDP needs every parameter in the loss


def test_loss_only_uses_masked_positions(tiny_config):
    m = XTrimoGeneModule(tiny_config).eval()
    cells = _cells()
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    base = m(cells, generator=g())
    masked = set(zip(base.rows.tolist(), base.positions.tolist(), strict=True))
    rows = cells.row_ids().tolist()
    entries = list(zip(rows, cells.pos.tolist(), strict=True))
    unmasked = next(i for i, e in enumerate(entries) if e not in masked)
    hit = next(i for i, e in enumerate(entries) if e in masked)

    def loss_with_target_changed_at(i):
        target = replace(cells, value=cells.value.clone())
        target.value[i] += 5.0
        return m(replace(cells, target=target), generator=g()).loss.item()

    assert loss_with_target_changed_at(unmasked) == pytest.approx(base.loss.item(), abs=1e-7)
    assert loss_with_target_changed_at(hit) > base.loss.item() + 1e-3
    assert base.target.numel() == base.n_masked == base.prediction.numel()


def test_masked_targets_match_input_values(tiny_config):
    m = XTrimoGeneModule(tiny_config).eval()
    cells = _cells()
    out = m(cells, generator=torch.Generator().manual_seed(3))
    # every masked target is either 0 (masked zero) or one of the cell's stored values
    stored = set(np.round(cells.value.numpy(), 5).tolist()) | {0.0}
    assert set(np.round(out.target.numpy(), 5).tolist()) <= stored
    assert (out.target > 0).any()
    assert (out.target == 0).any()


@pytest.mark.parametrize("pooling", ["concat", "max", "mean", "depth_tokens"])
def test_cell_embedding_does_not_depend_on_the_batch(tiny_config, pooling):
    m = XTrimoGeneModule(tiny_config).eval()
    cells = _cells(n_cells=8, density=0.2)
    with torch.no_grad():
        together = m.embed_cells(cells, pooling=pooling)
        for i in (0, 5):
            s, e = cells.crow[i].item(), cells.crow[i + 1].item()
            single = type(cells)(
                crow=torch.tensor([0, e - s]), pos=cells.pos[s:e], value=cells.value[s:e],
                depth_t=cells.depth_t[i : i + 1], depth_s=cells.depth_s[i : i + 1],
            )  # fmt: skip
            alone = m.embed_cells(single, pooling=pooling)
            torch.testing.assert_close(alone[0], together[i], atol=2e-5, rtol=1e-4)


def test_concat_pooling_layout(tiny_config):
    m = XTrimoGeneModule(tiny_config).eval()
    cells = _cells()
    with torch.no_grad():
        concat = m.embed_cells(cells, pooling="concat")
        parts = [m.embed_cells(cells, pooling=p) for p in ("depth_tokens", "max", "mean")]
    assert concat.shape[1] == 4 * tiny_config.encoder_dim
    torch.testing.assert_close(concat, torch.cat(parts, 1))


def test_pooling_without_depth_tokens(tiny_config):
    m = XTrimoGeneModule(tiny_config.replace(use_depth_tokens=False)).eval()
    with torch.no_grad():
        assert m.embed_cells(_cells(), pooling="concat").shape[1] == 2 * tiny_config.encoder_dim
        with pytest.raises(ValueError, match="depth_tokens"):
            m.embed_cells(_cells(), pooling="depth_tokens")


def test_decode_context_covers_every_position(tiny_config):
    m = XTrimoGeneModule(tiny_config).eval()
    with torch.no_grad():
        ctx = m.decode_context(_cells(n_cells=2))
    assert ctx.shape == (2, TOKENS.SEQ_LEN, tiny_config.decoder_dim)


def test_full_and_masked_decoders_share_parameters(tiny_config):
    full = XTrimoGeneModule(tiny_config.replace(decoder_mode="full"))
    masked = XTrimoGeneModule(tiny_config.replace(decoder_mode="masked"))
    masked.load_state_dict(full.state_dict())  # a model trained one way runs the other way


def test_config_validation_and_presets():
    with pytest.raises(ValueError, match="multiple"):
        XTrimoGeneConfig(encoder_dim=30, encoder_heads=4)
    with pytest.raises(ValueError, match="preset"):
        XTrimoGeneConfig.preset("huge")
    ref = XTrimoGeneConfig.preset("100m")
    assert (ref.encoder_dim, ref.encoder_depth, ref.decoder_dim, ref.decoder_depth) == (
        768,
        12,
        512,
        6,
    )
    assert XTrimoGeneConfig.from_dict(ref.to_dict()) == ref


def test_reference_configuration_parameter_count():
    with torch.device("meta"):
        m = XTrimoGeneModule(XTrimoGeneConfig.preset("100m"))
    n = sum(p.numel() for p in m.parameters())
    assert 115e6 < n < 122e6  # spec §4.1: ~119M incl. the 19,267 x 768 gene table


def test_encoder_cap_bounds_the_encoder_input_and_masks_the_rest(tiny_config):
    m = XTrimoGeneModule(tiny_config.replace(max_encoder_genes=5, mask_ratio_nonzero=0.0))
    cells = _cells(n_cells=3, density=0.2)
    seen = []
    m.encode = lambda c, keep=None: (
        seen.append(int(keep.sum())) or XTrimoGeneModule.encode(m, c, keep)
    )
    out = m(cells, generator=torch.Generator().manual_seed(0))
    assert seen == [5 * 3]  # 5 genes a cell reach the encoder
    n_nonzero = cells.pos.numel()
    # every surplus expressed gene is a masked target, with its true value
    masked_nonzero = int((out.target > 0).sum())
    assert masked_nonzero == n_nonzero - 15


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config):
    cells = _cells()
    grads = []
    for flag in (False, True):
        torch.manual_seed(0)
        m = XTrimoGeneModule(tiny_config.replace(gradient_checkpointing=flag, encoder_dropout=0.1))
        m.train()
        m(cells, generator=torch.Generator().manual_seed(3)).loss.backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6)
