"""What the module's passes return: the encoder's tokens and a pretraining step's result."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EncoderOutput:
    """Encoder hidden states with their positions and padding mask."""

    hidden: torch.Tensor  # (B, K, De)
    positions: torch.Tensor  # (B, K) vocabulary positions, PAD_POS at padding
    valid: torch.Tensor  # (B, K) True for real tokens


@dataclass
class PretrainOutput:
    """Masked-regression result of one training forward pass."""

    loss: torch.Tensor  # the training objective: ``masked_mse`` plus any cell-level terms
    n_masked: int
    prediction: torch.Tensor  # (n_masked,)
    target: torch.Tensor  # (n_masked,)
    rows: torch.Tensor  # (n_masked,) cell of each masked entry
    positions: torch.Tensor  # (n_masked,) vocabulary position of each masked entry
    masked_mse: torch.Tensor  # the masked regression alone (what the reconstruction error reports)


@dataclass
class MaskedEntries:
    """The entries one pretraining step hides, drawn by ``XTrimoGeneModule.sample_masks``."""

    hidden: torch.Tensor  # (nnz,) True for the expressed entries left out of the encoder
    rows: torch.Tensor  # (n_masked,) cell of each masked entry, sorted by (row, position)
    positions: torch.Tensor  # (n_masked,) vocabulary position of each masked entry
    candidates: torch.Tensor | None  # genes a zero could be masked at (None: every gene)
