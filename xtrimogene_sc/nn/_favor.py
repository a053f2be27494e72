"""FAVOR+ (Performer) non-causal softmax-kernel attention in plain torch.

Softmax attention ``softmax(q k^T / sqrt(d)) v`` is approximated with positive random features
``phi(x) = exp(w^T x' - |x'|^2 / 2) / sqrt(m)`` where ``x' = x / d^(1/4)`` and ``w`` are the rows of
an orthogonal Gaussian projection. Cost is linear in sequence length: ``O(L m d)``.

Random features are a buffer; they are redrawn every ``redraw_interval`` training forward calls from
a generator seeded by the redraw count, so every DDP rank and every resumed run draws the same ones.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def default_nb_features(head_dim: int) -> int:
    """Number of random features used by the reference model: ``floor(d ln d)``."""
    return int(head_dim * math.log(head_dim))


def orthogonal_gaussian_projection(
    nb_features: int, dim: int, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``(nb_features, dim)`` rows, orthogonal within blocks of ``dim``, Gaussian norms."""
    blocks = []
    for _ in range(math.ceil(nb_features / dim)):
        gaussian = torch.randn(dim, dim, generator=generator)
        q, _ = torch.linalg.qr(gaussian)
        blocks.append(q.T)
    rows = torch.cat(blocks)[:nb_features]
    norms = torch.randn(nb_features, dim, generator=generator).norm(dim=1, keepdim=True)
    return rows * norms


def softmax_features(
    x: torch.Tensor,
    projection: torch.Tensor,
    *,
    is_query: bool,
    valid: torch.Tensor | None = None,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Positive random features of queries or keys.

    Parameters
    ----------
    x
        ``(B, H, L, d)`` queries or keys.
    projection
        ``(m, d)`` random feature matrix.
    is_query
        Queries are stabilised per token. Keys are stabilised by one maximum per cell, over its
        heads, valid positions and features: for a single cell this is exactly the reference
        Performer (which subtracts one maximum over the whole key tensor), and unlike the
        reference it does not depend on padding or on the other cells of a batch.
    valid
        Optional ``(B, L)`` bool, True for real (non-padding) tokens. Padding keys get zero features.
    """
    d = x.shape[-1]
    x = x.float() * d**-0.25
    projected = torch.einsum("bhld,md->bhlm", x, projection.float())
    half_sq_norm = x.pow(2).sum(-1, keepdim=True) / 2
    # The stabiliser only keeps exp() in range; it is a constant of the kernel, not a function
    # to differentiate (a gradient through amax biases the updates and slows the backward pass).
    if is_query:
        stabiliser = projected.detach().amax(dim=-1, keepdim=True)
    else:
        masked = projected.detach()
        if valid is not None:
            masked = masked.masked_fill(~valid[:, None, :, None], float("-inf"))
        # a cell without any valid key (possible only in masked decoding) must not yield NaN
        stabiliser = masked.amax(dim=(1, 2, 3), keepdim=True).nan_to_num(neginf=0.0)
    features = (torch.exp(projected - half_sq_norm - stabiliser) + eps) / math.sqrt(
        projection.shape[0]
    )
    if valid is not None and not is_query:
        features = features * valid[:, None, :, None]
    return features


def linear_attention(q_feat: torch.Tensor, k_feat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Non-causal kernel attention ``phi(q) (phi(k)^T v) / phi(q) (phi(k)^T 1)``."""
    k_sum = k_feat.sum(dim=-2)  # (B, H, m)
    normaliser = torch.einsum("bhlm,bhm->bhl", q_feat, k_sum).clamp_min(1e-12)
    context = torch.einsum("bhlm,bhle->bhme", k_feat, v.float())  # (B, H, m, e)
    out = torch.einsum("bhlm,bhme->bhle", q_feat, context)
    return (out / normaliser.unsqueeze(-1)).to(v.dtype)


def _exp_features(
    x: torch.Tensor, scaled_projection: torch.Tensor, *, is_query: bool, valid: torch.Tensor | None
) -> torch.Tensor:
    """``exp(w^T x' - |x'|^2 / 2 - stabiliser)`` with one ``(B, H, L, m)`` buffer, worked in place.

    ``scaled_projection`` is the projection times ``d^(-1/4)``, so ``x`` is never rescaled.
    Padding keys get ``exp(-inf) = 0``.
    """
    d = x.shape[-1]
    projected = torch.matmul(x, scaled_projection.T)  # matmul's backward needs only its inputs
    half_sq_norm = x.pow(2).sum(-1, keepdim=True) * (0.5 * d**-0.5)
    if is_query:
        stabiliser = projected.detach().amax(dim=-1, keepdim=True)
    else:
        if valid is not None:
            projected.masked_fill_(~valid[:, None, :, None], float("-inf"))
        stabiliser = projected.detach().amax(dim=(1, 2, 3), keepdim=True).nan_to_num(neginf=0.0)
    return torch.exp(projected.sub_(half_sq_norm + stabiliser))


def favor_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    projection: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    eps: float = 1e-4,
) -> torch.Tensor:
    """FAVOR+ attention, equal to ``linear_attention(softmax_features(q), softmax_features(k), v)``.

    The fused form never builds the feature tensors ``(exp(.) + eps) / sqrt(m)``: the
    ``1 / sqrt(m)`` cancels between numerator and normaliser, and ``eps`` enters through small
    ``(B, H, m, e)`` sums (``phi = E + eps`` gives ``phi_q^T C = E_q^T C + eps 1^T C``). Only the
    two exponential maps ``E_q``, ``E_k`` of shape ``(B, H, L, m)`` are materialised, and the
    whole computation runs in float32 whatever the autocast context, because the exponential and
    the sums over positions are sensitive to bfloat16 rounding.
    """
    with torch.autocast(device_type=q.device.type, enabled=False):
        w = projection.float() * q.shape[-1] ** -0.25
        vf = v.float()
        e_q = _exp_features(q.float(), w, is_query=True, valid=None)
        e_k = _exp_features(k.float(), w, is_query=False, valid=valid)
        if valid is None:
            n_keys = torch.full(vf.shape[:2], float(vf.shape[2]), device=v.device)
            v_sum = vf.sum(-2)
        else:
            weights = valid.to(vf.dtype)
            n_keys = weights.sum(-1)[:, None].expand(vf.shape[:2])
            v_sum = torch.einsum("bhle,bl->bhe", vf, weights)
        k_sum = e_k.sum(-2) + eps * n_keys[..., None]  # (B, H, m)
        context = e_k.transpose(-1, -2) @ vf + eps * v_sum[:, :, None, :]  # (B, H, m, e)
        numerator = e_q @ context + eps * context.sum(-2, keepdim=True)
        normaliser = e_q @ k_sum[..., None] + eps * k_sum.sum(-1)[..., None, None]
        return (numerator / normaliser.clamp_min(1e-12)).to(v.dtype)


class FavorKernel(nn.Module):
    """FAVOR+ attention kernel with a redrawable projection buffer.

    Parameters
    ----------
    head_dim
        Per-head width ``d``.
    nb_features
        Number of random features ``m``; defaults to ``floor(d ln d)``.
    redraw_interval
        Redraw the features every this many training forward calls (0 disables redrawing).
    seed
        Base seed of the deterministic redraw sequence.
    """

    def __init__(
        self,
        head_dim: int,
        *,
        nb_features: int | None = None,
        redraw_interval: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.nb_features = nb_features or default_nb_features(head_dim)
        self.redraw_interval = redraw_interval
        self.seed = seed
        self.register_buffer("projection", self._draw(0))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def _draw(self, draw_index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + draw_index)
        return orthogonal_gaussian_projection(self.nb_features, self.head_dim, generator=generator)

    def maybe_redraw(self) -> None:
        """Count a training step (in training mode) and redraw the features when due."""
        if not self.training or self.redraw_interval <= 0:
            return
        if int(self.calls) > 0 and int(self.calls) % self.redraw_interval == 0:
            draw_index = int(self.calls) // self.redraw_interval
            self.projection.copy_(self._draw(draw_index).to(self.projection.device))
        self.calls += 1

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend ``(B, H, L, d)`` queries to keys/values; ``valid`` marks real tokens.

        Redrawing is left to the owner (:meth:`maybe_redraw`, once per training step), so that a
        forward pass recomputed by activation checkpointing uses the same features.
        """
        return favor_attention(q, k, v, self.projection, valid=valid)
