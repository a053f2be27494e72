from __future__ import annotations

import torch

from xtrimogene_sc.nn import ExactKernel, FavorKernel, softmax_features
from xtrimogene_sc.nn._favor import linear_attention, orthogonal_gaussian_projection


def _qkv(b=2, h=2, length=64, d=16, scale=0.5):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(b, h, length, d, generator=g) * scale for _ in range(3)]


def _favor_error(nb_features: int, seeds=range(5)) -> float:
    q, k, v = _qkv()
    exact = ExactKernel()(q, k, v)
    errors = []
    for seed in seeds:
        kernel = FavorKernel(16, nb_features=nb_features, seed=seed).eval()
        errors.append((kernel(q, k, v) - exact).abs().mean().item())
    return sum(errors) / len(errors)


def test_favor_approaches_exact_attention_as_features_grow():
    errors = [_favor_error(m) for m in (8, 64, 512)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.25 * errors[0]
    assert errors[2] < 0.03


def test_orthogonal_projection_blocks_are_orthogonal():
    w = orthogonal_gaussian_projection(16, 16, generator=torch.Generator().manual_seed(1))
    directions = w / w.norm(dim=1, keepdim=True)
    assert torch.allclose(directions @ directions.T, torch.eye(16), atol=1e-5)


def test_favor_ignores_padding_keys_and_other_cells():
    q, k, v = _qkv(b=1, length=10)
    kernel = FavorKernel(16, nb_features=32).eval()
    alone = kernel(q, k, v)
    # same cell padded with garbage keys, next to another very different cell
    pad = torch.randn(1, 2, 6, 16) * 50
    q2 = torch.cat([torch.cat([q, pad], 2), torch.randn(1, 2, 16, 16) * 3])
    k2 = torch.cat([torch.cat([k, pad], 2), torch.randn(1, 2, 16, 16) * 3])
    v2 = torch.cat([torch.cat([v, pad], 2), torch.randn(1, 2, 16, 16)])
    valid = torch.ones(2, 16, dtype=torch.bool)
    valid[0, 10:] = False
    batched = kernel(q2, k2, v2, valid)
    assert torch.allclose(batched[:1, :, :10], alone, atol=1e-5)


def test_key_features_are_zero_at_padding():
    x = torch.randn(1, 1, 5, 8)
    valid = torch.tensor([[True, True, False, True, False]])
    feats = softmax_features(x, torch.randn(4, 8), is_query=False, valid=valid)
    assert feats[0, 0, ~valid[0]].abs().sum() == 0


def test_features_redraw_only_in_training_and_deterministically():
    a = FavorKernel(8, nb_features=8, redraw_interval=2, seed=3)
    b = FavorKernel(8, nb_features=8, redraw_interval=2, seed=3)
    q, k, v = _qkv(b=1, h=1, length=4, d=8)
    first = a.projection.clone()
    a.eval()
    for _ in range(5):
        a.maybe_redraw()
        a(q, k, v)
    assert torch.equal(a.projection, first)
    a.train()
    b.train()
    for _ in range(3):
        a(q, k, v)
        assert torch.equal(a.projection, first)  # the forward pass itself never redraws
        a.maybe_redraw()
        b.maybe_redraw()
    assert not torch.equal(a.projection, first)
    assert torch.equal(a.projection, b.projection)  # every rank / resumed run draws the same
    assert "projection" in a.state_dict()


def test_linear_attention_matches_explicit_kernel_matrix():
    qf, kf = torch.rand(1, 1, 5, 7), torch.rand(1, 1, 6, 7)
    v = torch.randn(1, 1, 6, 3)
    attn = qf[0, 0] @ kf[0, 0].T
    expected = (attn / attn.sum(-1, keepdim=True)) @ v[0, 0]
    assert torch.allclose(linear_attention(qf, kf, v)[0, 0], expected, atol=1e-5)


def test_stabiliser_is_not_differentiated():
    x = torch.randn(1, 1, 6, 8, requires_grad=True)
    projection = torch.randn(5, 8)
    softmax_features(x, projection, is_query=False).sum().backward()
    grad_detached = x.grad.clone()
    # reference: the same features with the stabiliser computed from a detached copy by hand
    y = x.detach().clone().requires_grad_(True)
    d = 8
    z = y * d**-0.25
    proj = torch.einsum("bhld,md->bhlm", z, projection)
    stab = proj.detach().amax(dim=(1, 2, 3), keepdim=True)
    feats = (torch.exp(proj - z.pow(2).sum(-1, keepdim=True) / 2 - stab) + 1e-4) / 5**0.5
    feats.sum().backward()
    torch.testing.assert_close(grad_detached, y.grad)


def test_fused_favor_equals_the_reference_formulation_values_and_gradients():
    from xtrimogene_sc.nn._favor import favor_attention

    g = torch.Generator().manual_seed(4)
    q, k, v = [(torch.randn(3, 2, 50, 8, generator=g) * 0.8).requires_grad_() for _ in range(3)]
    projection = torch.randn(12, 8, generator=g)
    valid = torch.ones(3, 50, dtype=torch.bool)
    valid[1, 30:] = False
    results = []
    for fused in (False, True):
        for t in (q, k, v):
            t.grad = None
        if fused:
            out = favor_attention(q, k, v, projection, valid=valid)
        else:
            out = linear_attention(
                softmax_features(q, projection, is_query=True),
                softmax_features(k, projection, is_query=False, valid=valid),
                v,
            )
        (out * torch.arange(8.0)).sum().backward()
        results.append((out.detach(), [t.grad.clone() for t in (q, k, v)]))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    for fused_grad, reference_grad in zip(results[1][1], results[0][1], strict=True):
        torch.testing.assert_close(fused_grad, reference_grad, rtol=1e-4, atol=1e-6)


def test_decoder_under_bf16_autocast_stays_within_bf16_noise_of_fp32():
    from xtrimogene_sc.nn import DecoderBlock

    torch.manual_seed(0)
    block = DecoderBlock(32, 4, nb_features=16).eval()
    x = torch.randn(2, 300, 32)
    with torch.no_grad():
        reference = block(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = block(x).float()
    # bf16 has an 8-bit mantissa: relative error ~4e-3 per rounding, a few roundings deep
    assert (low - reference).abs().max() < 0.05 * reference.abs().max()
    assert (low - reference).abs().mean() < 0.01 * reference.abs().mean()
