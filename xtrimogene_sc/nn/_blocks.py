"""Transformer blocks: the exact-attention encoder and the Performer decoder.

Attention kernels share one call shape, ``kernel(q, k, v, valid)`` with ``(B, H, L, d)`` tensors and
``valid`` a ``(B, L)`` bool that is True for real tokens. ``valid`` is converted once, here, to the
convention of :func:`torch.nn.functional.scaled_dot_product_attention` (True = may attend).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from xtrimogene_sc.nn._favor import FavorKernel


class ExactKernel(nn.Module):
    """Exact softmax attention through SDPA with a boolean key-padding mask."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = dropout

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend; padding keys (``valid`` False) receive no weight."""
        attn_mask = None if valid is None else valid[:, None, None, :]
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` that draws its CPU mask as ``rand >= p`` (same distribution).

    On CPU, ``bernoulli_`` (what :func:`torch.nn.functional.dropout` uses) is about twice as slow
    as ``rand_like`` plus a comparison, and the encoder's dropouts took a sixth of a small
    model's training step. Other devices keep the fused kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.device.type != "cpu" or not 0 < self.p < 1 or self.inplace:
            return super().forward(x)
        keep = torch.rand_like(x).ge_(self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep


class MultiHeadAttention(nn.Module):
    """Q/K/V/output projections around an interchangeable attention kernel."""

    def __init__(self, dim: int, heads: int, kernel: nn.Module) -> None:
        super().__init__()
        if dim % heads:
            msg = f"width {dim} is not divisible by {heads} heads"
            raise ValueError(msg)
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.kernel = kernel

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention over ``x`` of shape ``(B, L, D)``."""
        b, length, dim = x.shape
        qkv = self.qkv(x).view(b, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, L, d)
        y = self.kernel(q, k, v, valid)
        return self.out(y.transpose(1, 2).reshape(b, length, dim))

    def forward_at(
        self, x: torch.Tensor, valid: torch.Tensor | None, rows: torch.Tensor, slots: torch.Tensor
    ) -> torch.Tensor:
        """``forward(x, valid)[rows, slots]`` ``(n, D)``: the output projection at those tokens only."""
        b, length, dim = x.shape
        qkv = self.qkv(x).view(b, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, L, d)
        y = self.kernel(q, k, v, valid)[rows, :, slots]  # (n, H, d)
        return self.out(y.reshape(rows.numel(), dim))


def feed_forward(dim: int, mult: int, activation: Literal["relu", "gelu"], dropout: float):
    """Position-wise two-layer MLP."""
    act = nn.ReLU() if activation == "relu" else nn.GELU()
    # Identity keeps the layer indices (and so the saved weight names) of the dropout version
    drop = Dropout(dropout) if dropout > 0 else nn.Identity()
    return nn.Sequential(nn.Linear(dim, dim * mult), act, drop, nn.Linear(dim * mult, dim))


class EncoderBlock(nn.Module):
    """Post-LN block with exact attention, as ``nn.TransformerEncoderLayer`` (ReLU, dropout).

    ``dropout`` acts on the residual branches and the feed-forward hidden layer;
    ``attention_dropout`` on the attention weights (keep it 0 on CPU: see
    :class:`~xtrimogene_sc.XTrimoGeneConfig`).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        ff_mult: int = 4,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, heads, ExactKernel(attention_dropout))
        self.ff = feed_forward(dim, ff_mult, "relu", dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, K, D); ``valid``: (B, K) True for real tokens."""
        x = self.norm1(x + self.dropout(self.attn(x, valid)))
        return self.norm2(x + self.dropout(self.ff(x)))


class DecoderBlock(nn.Module):
    """Pre-LN block with FAVOR+ (or exact, for baselines) attention and a GELU MLP."""

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        ff_mult: int = 4,
        attention: Literal["favor", "exact"] = "favor",
        nb_features: int | None = None,
        redraw_interval: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        head_dim = dim // heads
        kernel: nn.Module
        if attention == "favor":
            kernel = FavorKernel(
                head_dim, nb_features=nb_features, redraw_interval=redraw_interval, seed=seed
            )
        else:
            kernel = ExactKernel()
        self.attn = MultiHeadAttention(dim, heads, kernel)
        self.ff = feed_forward(dim, ff_mult, "gelu", 0.0)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, L, D); ``valid``: optional (B, L) True for real tokens."""
        x = x + self.attn(self.norm1(x), valid)
        return x + self.ff(self.norm2(x))

    def forward_at(
        self, x: torch.Tensor, valid: torch.Tensor | None, rows: torch.Tensor, slots: torch.Tensor
    ) -> torch.Tensor:
        """``forward(x, valid)[rows, slots]`` ``(n, D)``, computing only those tokens' outputs.

        Attention runs over every token, but its output projection, the residuals and the
        feed-forward layer only at the selected ones: for the decoder's last block, whose
        outputs are read at the masked positions only, about half of those.
        """
        x_at = x[rows, slots] + self.attn.forward_at(self.norm1(x), valid, rows, slots)
        return x_at + self.ff(self.norm2(x_at))
