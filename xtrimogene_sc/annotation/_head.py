"""Fine-tuning head on a backbone encoder: frozen layers, pooled output, MLP, class logits."""

from __future__ import annotations

import torch
from torch import nn

from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.module._freezing import freeze_backbone
from xtrimogene_sc.module._module import XTrimoGeneModule
from xtrimogene_sc.module._pooling import Pooling, pooled_width


class ClassifierModule(nn.Module):
    """Backbone encoder with frozen layers, pooled output -> MLP head -> class logits."""

    def __init__(
        self,
        backbone: XTrimoGeneModule,
        n_classes: int,
        *,
        n_trainable_layers: int,
        pooling: Pooling,
        hidden_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        in_dim = pooled_width(backbone.config, pooling)
        self.n_classes = n_classes
        self.head = nn.Sequential(
            nn.BatchNorm1d(in_dim, affine=False, eps=1e-6),
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, n_classes),
        )
        self.trainable_blocks = freeze_backbone(backbone, n_trainable_layers)

    def train(self, mode: bool = True) -> ClassifierModule:
        """Only the head follows ``mode``; the encoder always runs without dropout.

        Dropout in the encoder would change the variance of the pooled features between training
        and evaluation, after the head's BatchNorm has learnt their training-time statistics; on
        small data the head can then predict a single class at evaluation for many epochs.
        """
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, cells: SparseCells) -> torch.Tensor:
        """Class logits ``(B, n_classes)``."""
        return self.head(self.backbone.embed_cells(cells, pooling=self.pooling))
