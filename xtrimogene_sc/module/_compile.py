"""``torch.compile`` of the module's dense blocks for one run, falling back to eager.

The step's data-dependent parts (masking, packing tokens of varying counts, sparse look-ups)
stay eager; the blocks whose shapes follow the batch (the value embedding, the encoder and the
decoder blocks) are compiled with dynamic shapes, so a new token count does not recompile.
Each block is compiled in place (as :meth:`torch.nn.Module.compile` does), so parameter names
and saved weights do not change, and only inside :func:`compiled_blocks`: a model is never left
holding compiled code (which neither pickles nor copies well).

On the project's 2-core CPU the compiled recipe step was not faster and the first steps spent
about a minute compiling (``benchmarks/EFFICIENCY_RESULTS.md``), so it is off by default; on a
GPU, fused kernels and fewer launches are what compilation is for.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


def dense_blocks(module: nn.Module, *, decoder: bool) -> list[nn.Module]:
    """The blocks of ``module`` worth compiling: value embedding, encoder (and decoder) blocks."""
    blocks = [module.value_embedding, *module.encoder_blocks]
    return blocks + list(module.decoder_blocks) if decoder else blocks


@contextmanager
def compiled_blocks(
    module: nn.Module, *, enabled: bool, decoder: bool = True, **options: Any
) -> Iterator[bool]:
    """Run the enclosed code with the module's dense blocks compiled; yields whether they are.

    Parameters
    ----------
    module
        An :class:`~xtrimogene_sc.module.XTrimoGeneModule`.
    enabled
        ``False``: nothing changes (the default of ``train`` and the embeddings).
    decoder
        Also the decoder blocks (training); embedding runs the encoder only.
    **options
        Further :func:`torch.compile` arguments (e.g. ``mode="max-autotune"`` on a GPU).

    Where ``torch.compile`` is missing or refuses (no compiler for the platform, an unsupported
    Python), or a block fails to compile at its first call, that block runs eagerly from then
    on, with one warning; results are the same either way, up to float rounding.
    """
    if not enabled:
        yield False
        return
    blocks = dense_blocks(module, decoder=decoder)
    warned: list[bool] = []  # one warning a run, however many blocks fall back
    try:
        for block in blocks:
            compiled = torch.compile(block._call_impl, dynamic=True, **options)
            block._compiled_call_impl = _with_fallback(block, compiled, warned)
            if hasattr(block, "forward_at"):  # the masked decoder calls its last block so
                at = torch.compile(block.forward_at, dynamic=True, **options)
                block.forward_at = _with_fallback(block, at, warned, block.forward_at)
    except Exception as err:  # e.g. "Dynamo is not supported on this Python"
        _uncompile(blocks)
        _warn(err)
        yield False
        return
    try:
        yield True
    finally:
        _uncompile(blocks)


def _with_fallback(
    block: nn.Module,
    compiled: Callable[..., Any],
    warned: list[bool],
    eager: Callable[..., Any] | None = None,
) -> Callable[..., Any]:
    """``compiled``, which on failure makes ``block`` eager and runs ``eager`` instead.

    ``eager`` is the method ``compiled`` replaces (``None``: the module call itself).
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return compiled(*args, **kwargs)
        except Exception as err:  # a real error in the block raises again from the eager call
            _uncompile([block])
            if not warned:
                warned.append(True)
                _warn(err)
            return (eager or block._call_impl)(*args, **kwargs)

    return call


def _uncompile(blocks: list[nn.Module]) -> None:
    for block in blocks:
        block._compiled_call_impl = None
        block.__dict__.pop("forward_at", None)  # back to the class's method


def _warn(err: BaseException) -> None:
    message = (
        f"compile=True: torch.compile is not available here ({type(err).__name__}: "
        f"{str(err).splitlines()[0] if str(err) else ''}); running eagerly, with the same results"
    )
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    logger.debug("torch.compile failed", exc_info=err)
