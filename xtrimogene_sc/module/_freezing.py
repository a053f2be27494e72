"""Which backbone weights a task model fine-tunes: the last encoder blocks, or none.

The classifier and the perturbation head both train on a copy of a pretrained backbone whose
embeddings and early encoder blocks stay fixed; this is the one implementation of that rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xtrimogene_sc._arguments import require_int_in

if TYPE_CHECKING:
    from xtrimogene_sc.module._config import XTrimoGeneConfig
    from xtrimogene_sc.module._module import XTrimoGeneModule


def check_trainable_layers(n_trainable_layers: Any, config: XTrimoGeneConfig) -> None:
    """Refuse a count of fine-tuned encoder blocks outside ``[0, encoder_depth]``."""
    require_int_in(
        "n_trainable_layers", n_trainable_layers, 0, config.encoder_depth,
        f"(0 freezes the backbone; the encoder has {config.encoder_depth} block(s))",
    )  # fmt: skip


def freeze_backbone(backbone: XTrimoGeneModule, n_trainable_layers: int) -> list[int]:
    """Freeze ``backbone`` except its last ``n_trainable_layers`` encoder blocks.

    The final encoder LayerNorm trains with them (it normalises their output). Returns the
    indices of the trainable blocks.
    """
    check_trainable_layers(n_trainable_layers, backbone.config)
    backbone.requires_grad_(False)
    n_blocks = len(backbone.encoder_blocks)
    trainable = list(range(n_blocks - n_trainable_layers, n_blocks))
    for i in trainable:
        backbone.encoder_blocks[i].requires_grad_(True)
    if n_trainable_layers:
        backbone.encoder_norm.requires_grad_(True)
    return trainable
