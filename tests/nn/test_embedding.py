from __future__ import annotations

import torch

from xtrimogene_sc.nn import AutoDiscretizationEmbedding


def test_auto_discretization_shapes_and_bins():
    emb = AutoDiscretizationEmbedding(24, bin_num=10)
    values = torch.rand(3, 7) * 5
    out = emb(values)
    assert out.shape == (3, 7, 24)
    weights = emb.bin_weights(values)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 7), atol=1e-6)
    assert torch.allclose(out, weights @ emb.bin_table.weight, atol=1e-6)


def test_auto_discretization_matches_formula():
    emb = AutoDiscretizationEmbedding(8, bin_num=5, bin_alpha=0.7)
    v = torch.tensor([0.0, 1.5, 4.0])
    u1 = v[:, None] * emb.to_bins.weight[:, 0] + emb.to_bins.bias
    u2 = torch.where(u1 > 0, u1, 0.1 * u1)
    u3 = 0.7 * u2 + u2 @ emb.bin_mix.weight.T + emb.bin_mix.bias
    expected = torch.softmax(u3, -1) @ emb.bin_table.weight
    assert torch.allclose(emb(v), expected, atol=1e-6)


def test_auto_discretization_gradient_reaches_every_parameter():
    emb = AutoDiscretizationEmbedding(8, bin_num=6)
    (emb(torch.rand(10) * 3).pow(2).sum() + emb.mask_embedding.sum()).backward()
    for name, p in emb.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_zero_embedding_is_embedding_of_zero():
    emb = AutoDiscretizationEmbedding(8, bin_num=6)
    assert torch.allclose(emb.zero_embedding(), emb(torch.zeros(1))[0])
