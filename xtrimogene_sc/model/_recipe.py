"""A named training recipe: model size, masking and schedule chosen together, with a pooling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainingRecipe:
    """How to pretrain a model from scratch and embed with it.

    Attributes
    ----------
    preset
        Size preset (see :meth:`~xtrimogene_sc.XTrimoGeneConfig.preset`).
    decoder_mode, mask_ratio_nonzero, zero_mask_scope, encoder_dropout
        :class:`~xtrimogene_sc.XTrimoGeneConfig` fields.
    epochs, batch_size, lr
        :meth:`~xtrimogene_sc.XTrimoGene.train` arguments.
    pooling
        Pooling for :meth:`~xtrimogene_sc.XTrimoGene.get_latent_representation`.
    """

    preset: str = "tiny"
    decoder_mode: str = "masked"
    mask_ratio_nonzero: float = 0.3
    zero_mask_scope: str = "observed"
    encoder_dropout: float = 0.1
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    pooling: str = "concat"

    def config_overrides(self) -> dict[str, Any]:
        """Config fields to pass to :class:`~xtrimogene_sc.XTrimoGene`."""
        return {
            "decoder_mode": self.decoder_mode,
            "mask_ratio_nonzero": self.mask_ratio_nonzero,
            "zero_mask_scope": self.zero_mask_scope,
            "encoder_dropout": self.encoder_dropout,
        }

    def train_kwargs(self) -> dict[str, Any]:
        """Arguments to pass to :meth:`~xtrimogene_sc.XTrimoGene.train`."""
        return {"max_epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}


SMALL_DATA_RECIPE = TrainingRecipe()
"""The recipe of ``xtrimogene-sc demo``: chosen by ``benchmarks/bench_small_data.py --sweep``."""
