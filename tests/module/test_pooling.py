"""One pooling rule for every model: the widths it states are the widths the encoder gives."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from xtrimogene_sc.annotation._head import ClassifierModule
from xtrimogene_sc.data._tokenize import tokenize_counts
from xtrimogene_sc.module import XTrimoGeneModule
from xtrimogene_sc.module._freezing import freeze_backbone
from xtrimogene_sc.module._pooling import POOLINGS, check_pooling, pooled_width


def _cells(n_cells: int = 5) -> object:
    rng = np.random.default_rng(0)
    x = sp.random(n_cells, 200, density=0.1, format="csr", random_state=0,
                  data_rvs=lambda n: rng.integers(1, 20, n)).astype(np.float32)  # fmt: skip
    return tokenize_counts(x, np.arange(200) * 7)


@pytest.mark.parametrize("depth_tokens", [True, False])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooled_width_is_what_the_encoder_gives(tiny_config, pooling, depth_tokens):
    config = tiny_config.replace(use_depth_tokens=depth_tokens)
    module = XTrimoGeneModule(config).eval()
    if pooling == "depth_tokens" and not depth_tokens:
        with pytest.raises(ValueError, match="use_depth_tokens=True"):
            pooled_width(config, pooling)
        return
    with torch.no_grad():
        out = module.embed_cells(_cells(), pooling=pooling)
    assert out.shape == (5, pooled_width(config, pooling))
    head = ClassifierModule(
        module, 3, n_trainable_layers=0, pooling=pooling, hidden_dim=4, dropout=0.0
    ).eval()
    with torch.no_grad():
        assert head(_cells()).shape == (5, 3)


def test_unknown_pooling_is_refused_before_the_encoder_runs(tiny_config):
    with pytest.raises(ValueError, match=r"unknown pooling 'sum'; use one of \['concat'"):
        check_pooling("sum", tiny_config)
    module = XTrimoGeneModule(tiny_config)
    module.encode = None  # a call would fail with a TypeError, not the pooling message
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        module.embed_cells(_cells(), pooling="sum")


@pytest.mark.parametrize("n_trainable", [0, 1, 2])
def test_freeze_backbone_trains_only_the_last_blocks(tiny_config, n_trainable):
    module = XTrimoGeneModule(tiny_config.replace(encoder_depth=2))
    assert freeze_backbone(module, n_trainable) == list(range(2 - n_trainable, 2))
    trainable = {n.split(".")[0] + "." + n.split(".")[1] for n, p in module.named_parameters()
                 if p.requires_grad}  # fmt: skip
    expected = {f"encoder_blocks.{i}" for i in range(2 - n_trainable, 2)}
    if n_trainable:
        expected |= {"encoder_norm.weight", "encoder_norm.bias"}
    assert trainable == expected


@pytest.mark.parametrize("bad", [-1, 3, 1.0, True, None])
def test_freeze_backbone_refuses_counts_outside_the_encoder(tiny_config, bad):
    module = XTrimoGeneModule(tiny_config.replace(encoder_depth=2))
    with pytest.raises(ValueError, match=r"n_trainable_layers must be an integer in \[0, 2\]"):
        freeze_backbone(module, bad)
