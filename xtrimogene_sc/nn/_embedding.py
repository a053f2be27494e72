"""Auto-discretization value embedding (xTrimoGene §2.1 of the spec).

A scalar expression value ``v`` is softly assigned to ``bin_num`` learned bins and embedded as the
probability-weighted sum of the bin vectors::

    u1 = W1 v + b1                    (1 -> bins)
    u2 = LeakyReLU(u1, 0.1)
    u3 = alpha * u2 + (W2 u2 + b2)    (bins -> bins, residual scaled by alpha)
    p  = softmax(u3)
    e  = p @ B                         (B: bins x dim)
"""

from __future__ import annotations

import torch
from torch import nn


class AutoDiscretizationEmbedding(nn.Module):
    """Embed scalar values by a soft, learned assignment to value bins.

    Parameters
    ----------
    dim
        Output embedding width.
    bin_num
        Number of learned bins (100 in the reference model).
    bin_alpha
        Weight of the residual term in the bin projection (1.0 in the reference model).
    """

    def __init__(self, dim: int, *, bin_num: int = 100, bin_alpha: float = 1.0) -> None:
        super().__init__()
        self.bin_alpha = bin_alpha
        self.to_bins = nn.Linear(1, bin_num)
        self.bin_mix = nn.Linear(bin_num, bin_num)
        self.activation = nn.LeakyReLU(0.1)
        self.bin_table = nn.Embedding(bin_num, dim)
        self.mask_embedding = nn.Parameter(torch.randn(dim) * 0.02)

    def bin_weights(self, values: torch.Tensor) -> torch.Tensor:
        """Soft bin assignment ``p`` with shape ``values.shape + (bin_num,)``."""
        u = self.activation(self.to_bins(values.unsqueeze(-1)))
        u = self.bin_alpha * u + self.bin_mix(u)
        return torch.softmax(u, dim=-1)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """Embed ``values`` of any shape; returns ``values.shape + (dim,)``."""
        return self.bin_weights(values) @ self.bin_table.weight

    def zero_embedding(self) -> torch.Tensor:
        """The embedding of an unexpressed gene (value 0), shape ``(dim,)``."""
        zero = torch.zeros(1, device=self.bin_table.weight.device)
        return self.forward(zero)[0]
