"""The encoder's CPU dropout: nn.Dropout's distribution and scaling, drawn more cheaply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xtrimogene_sc.nn._blocks import Dropout, EncoderBlock


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
