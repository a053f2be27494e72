"""The encoder's CPU dropout: nn.Dropout's distribution and scaling, drawn more cheaply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xtrimogene_sc.nn._blocks import DecoderBlock, Dropout, EncoderBlock


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_zeroes_a_share_p_and_scales_the_rest(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    y = Dropout(p).train()(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - p) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    y.sum().backward()  # the gradient is the same mask and scale
    assert torch.equal(x.grad, y.detach())


def test_dropout_is_the_identity_in_eval_mode_and_at_the_edges() -> None:
    x = torch.randn(4, 8)
    assert torch.equal(Dropout(0.1).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_encoder_blocks_use_it_and_keep_the_weight_names() -> None:
    block = EncoderBlock(16, 2, dropout=0.1)
    drops = [m for m in block.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2
    assert all(isinstance(m, Dropout) for m in drops)
    assert "ff.3.weight" in block.state_dict()  # the layer indices of the saved layout


@pytest.mark.parametrize("attention", ["favor", "exact"])
def test_a_decoder_block_at_selected_tokens_equals_selecting_its_full_output(attention) -> None:
    torch.manual_seed(0)
    block = DecoderBlock(16, 2, attention=attention, nb_features=8)
    x = torch.randn(3, 7, 16, requires_grad=True)
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[1, 5:] = False
    rows, slots = torch.tensor([0, 0, 1, 2, 2]), torch.tensor([1, 6, 4, 0, 3])
    full = block(x, valid)[rows, slots]
    picked = block.forward_at(x, valid, rows, slots)
    torch.testing.assert_close(picked, full, rtol=1e-6, atol=1e-6)
    (grad_full,) = torch.autograd.grad(full.sum(), x)
    (grad_picked,) = torch.autograd.grad(picked.sum(), x)
    torch.testing.assert_close(grad_picked, grad_full, rtol=1e-5, atol=1e-6)
