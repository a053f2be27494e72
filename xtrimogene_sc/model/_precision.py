"""Numerical precision of inference: bf16 autocast on GPUs, fp32 (with or without TF32) otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch

Precision = Literal["bf16", "32", "32-strict"]
PRECISIONS = ("bf16", "32", "32-strict")


def default_precision(device: torch.device) -> Precision:
    """``"bf16"`` on CUDA devices that support it, else ``"32"``."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "32"


@contextmanager
def inference_precision(device: torch.device, precision: Precision | None = None) -> Iterator[str]:
    """Run the enclosed forward passes at ``precision`` on ``device``; yields the one used.

    ``"bf16"`` autocasts matrix products to bfloat16 (the default on GPUs that have it);
    ``"32"`` computes in float32 and lets CUDA use TF32 tensor cores for matrix products where
    the GPU has them (about 1e-3 relative error per product, several times faster than strict
    fp32); ``"32-strict"`` is float32 without TF32. On CPU ``"32"`` and ``"32-strict"`` are the
    same.
    """
    precision = precision or default_precision(device)
    if precision not in PRECISIONS:
        msg = f"precision must be one of {PRECISIONS}, got {precision!r}"
        raise ValueError(msg)
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield precision
        return
    if device.type != "cuda":
        yield precision
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    tf32 = precision == "32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield precision
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
