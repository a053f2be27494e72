"""Pooling of the encoder's tokens into one vector per cell, and the width of that vector.

Every model that reads a cell through the encoder (embeddings, the classifier, the perturbation
head, label transfer) pools with :func:`pool_tokens`, sizes its input with :func:`pooled_width`
and checks the user's choice with :func:`check_pooling` before it reads any data, so the choices
that work and their widths are written down once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, get_args

import torch

from xtrimogene_sc._constants import TOKENS

if TYPE_CHECKING:
    from xtrimogene_sc.module._config import XTrimoGeneConfig
    from xtrimogene_sc.module._outputs import EncoderOutput

Pooling = Literal["concat", "max", "mean", "depth_tokens", "max_all_tokens"]
POOLINGS: tuple[str, ...] = get_args(Pooling)


def check_pooling(pooling: Any, config: XTrimoGeneConfig) -> None:
    """Refuse an unknown pooling, or one the model's configuration cannot give.

    Raises
    ------
    ValueError
        ``pooling`` is not one of :data:`POOLINGS`, or is ``"depth_tokens"`` for a model
        without the T and S tokens.
    """
    if pooling not in POOLINGS:
        msg = f"unknown pooling {pooling!r}; use one of {list(POOLINGS)}"
        raise ValueError(msg)
    if pooling == "depth_tokens" and not config.use_depth_tokens:
        msg = "pooling='depth_tokens' needs a model trained with use_depth_tokens=True"
        raise ValueError(msg)


def pooled_width(config: XTrimoGeneConfig, pooling: Pooling) -> int:
    """Width of the pooled cell vector: a multiple of the encoder width.

    ``"concat"`` is ``[S, T, max, mean]`` (``[max, mean]`` without depth tokens), ``"depth_tokens"``
    ``[S, T]``, the others one encoder width.
    """
    check_pooling(pooling, config)
    pieces = {"concat": 4 if config.use_depth_tokens else 2, "depth_tokens": 2}
    return pieces.get(pooling, 1) * config.encoder_dim


def pool_tokens(out: EncoderOutput, pooling: Pooling, config: XTrimoGeneConfig) -> torch.Tensor:
    """``(B, pooled_width)`` cell vectors from the encoder output (padding never counts).

    ``"concat"`` is the reference recipe ``[S, T, max, mean]``; ``"max"``/``"mean"`` pool over
    gene tokens; ``"depth_tokens"`` is ``[S, T]``; ``"max_all_tokens"`` is the reference
    ``pool_type='max'``: a maximum over every encoder token, T and S included.
    """
    check_pooling(pooling, config)
    if pooling == "max_all_tokens":
        return masked_max(out.hidden, out.valid)
    gene_tokens = out.valid & (out.positions < TOKENS.N_GENES)
    pieces: list[torch.Tensor] = []
    if pooling in ("concat", "depth_tokens") and config.use_depth_tokens:
        pieces += [token_at(out, TOKENS.S_POS), token_at(out, TOKENS.T_POS)]
    if pooling in ("concat", "max"):
        pieces.append(masked_max(out.hidden, gene_tokens))
    if pooling in ("concat", "mean"):
        pieces.append(masked_mean(out))
    return torch.cat(pieces, dim=-1)


def masked_max(hidden: torch.Tensor, include: torch.Tensor) -> torch.Tensor:
    """Maximum of ``hidden`` ``(B, K, D)`` over the tokens where ``include`` ``(B, K)`` is True."""
    neg_inf = torch.finfo(hidden.dtype).min
    return hidden.masked_fill(~include[..., None], neg_inf).amax(dim=1)


def masked_mean(out: EncoderOutput) -> torch.Tensor:
    """Mean hidden state over each row's gene tokens (zeros for a row without one) ``(B, De)``."""
    weights = (out.valid & (out.positions < TOKENS.N_GENES))[..., None].to(out.hidden.dtype)
    return (out.hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def token_at(out: EncoderOutput, position: int) -> torch.Tensor:
    """Hidden state of the token at vocabulary ``position`` in each row ``(B, De)``."""
    slot = (out.positions == position).to(torch.long).argmax(dim=1)
    return out.hidden[torch.arange(out.hidden.shape[0], device=slot.device), slot]
