"""Token budgets: how many padded encoder tokens a minibatch may hold, derived from memory.

Encoder activation memory grows with the number of padded tokens in a batch (cells x longest
cell), not with the number of cells, so batches are cut by tokens (see
:class:`~xtrimogene_sc.data.LengthBucketBatchSampler`). The per-token figures below are upper
estimates of the activations one encoder token keeps alive, in units of the encoder width:

* inference: the widest transient tensors of one block (q, k, v, attention output, the
  feed-forward hidden layer) -- about ``ff_mult + 6`` vectors;
* training: what every block stores for the backward pass (about ``2 ff_mult + 12`` vectors a
  block), plus the masked decoder's tokens, which are roughly as many again.
"""

from __future__ import annotations

import torch

from xtrimogene_sc.module._config import XTrimoGeneConfig

CPU_INFERENCE_BYTES = 1 * 1024**3
CPU_TRAINING_BYTES = 4 * 1024**3
GPU_INFERENCE_FRACTION = 0.125
GPU_TRAINING_FRACTION = 0.4
MIN_TOKENS = 4096


def bytes_per_token(config: XTrimoGeneConfig, *, training: bool, element_size: int = 4) -> int:
    """Estimated activation bytes one encoder token costs (see the module docstring)."""
    if not training:
        return (config.ff_mult + 6) * config.encoder_dim * element_size
    per_block = 2 * config.ff_mult + 12
    encoder = config.encoder_depth * per_block * config.encoder_dim
    decoder = config.decoder_depth * per_block * config.decoder_dim
    if config.gradient_checkpointing:  # only block inputs are kept, plus one block recomputed
        encoder = (config.encoder_depth + per_block) * config.encoder_dim
        decoder = (config.decoder_depth + per_block) * config.decoder_dim
    return (encoder + decoder) * element_size


def token_budget(
    config: XTrimoGeneConfig,
    device: torch.device | str,
    *,
    training: bool,
    memory_bytes: int | None = None,
) -> int:
    """Largest number of padded encoder tokens per batch for ``config`` on ``device``.

    Parameters
    ----------
    config
        The model's hyper-parameters.
    device
        Where the batch runs: on CUDA a fraction of the device's memory is used
        (``GPU_TRAINING_FRACTION`` or ``GPU_INFERENCE_FRACTION``), on CPU a fixed budget
        (``CPU_TRAINING_BYTES`` or ``CPU_INFERENCE_BYTES``).
    training
        Budget for a training step (activations kept for backward) or for inference.
    memory_bytes
        Use this many bytes instead of the device default.
    """
    device = torch.device(device)
    element_size = 4
    if memory_bytes is None:
        if device.type == "cuda":
            total = torch.cuda.get_device_properties(device).total_memory
            fraction = GPU_TRAINING_FRACTION if training else GPU_INFERENCE_FRACTION
            memory_bytes = int(total * fraction)
            element_size = 2  # bf16 autocast
        else:
            memory_bytes = CPU_TRAINING_BYTES if training else CPU_INFERENCE_BYTES
    per_token = bytes_per_token(config, training=training, element_size=element_size)
    return max(MIN_TOKENS, memory_bytes // per_token)
