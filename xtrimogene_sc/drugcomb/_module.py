"""Pure-torch synergy networks: an order-invariant pair model and a DeepSynergy-style MLP.

Both hold the drug and cell-line feature tables as buffers and take integer indices into them, so
a minibatch encodes each distinct drug once, however many combinations contain it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

Architecture = Literal["symmetric", "concat"]


@dataclass(frozen=True)
class SynergyConfig:
    """Shape of a synergy network.

    Attributes
    ----------
    n_drug_features, n_cell_features
        Width of the drug and cell-line feature tables (``n_cell_features=0``: drugs only).
    architecture
        ``"symmetric"``: a shared drug encoder, the pair as ``[h_a + h_b, h_a * h_b]`` (exactly
        invariant to the drug order), concatenated with the encoded cell line, then an MLP.
        ``"concat"``: DeepSynergy's MLP on ``[x_a, x_b, x_cell]`` (order-dependent; the model
        class averages both orders). Input dropout is drawn per distinct drug and cell line of a
        minibatch in both.
    drug_dim, cell_dim, hidden_dim
        Widths of the drug encoding, the cell-line encoding and the hidden layers.
    n_hidden
        Hidden layers of the head (``"concat"``: of the whole MLP).
    dropout, input_dropout
        Dropout between hidden layers and on the input features.
    """

    n_drug_features: int
    n_cell_features: int = 0
    architecture: Architecture = "symmetric"
    drug_dim: int = 128
    cell_dim: int = 64
    hidden_dim: int = 256
    n_hidden: int = 2
    dropout: float = 0.3
    input_dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return asdict(self)


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout between consecutive ``sizes`` (no activation after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class SynergyModule(nn.Module):
    """Scores ``(drug a, drug b, cell line)`` index triplets: one logit or regression value each.

    Parameters
    ----------
    config
        Network shape.
    drug_table
        ``(n_drugs, n_drug_features)`` drug features (e.g. Morgan bits).
    cell_table
        ``(n_cell_lines, n_cell_features)`` standardised cell-line features, or ``None`` for a
        drugs-only network.
    """

    def __init__(
        self,
        config: SynergyConfig,
        drug_table: torch.Tensor,
        cell_table: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        if drug_table.shape[1] != config.n_drug_features:
            n_drug = drug_table.shape[1]
            msg = f"drug_table has {n_drug} features, config says {config.n_drug_features}"
            raise ValueError(msg)
        n_cell = 0 if cell_table is None else cell_table.shape[1]
        if n_cell != config.n_cell_features:
            msg = f"cell_table has {n_cell} features, config says {config.n_cell_features}"
            raise ValueError(msg)
        self.register_buffer("drug_table", drug_table.float())
        self.register_buffer(
            "cell_table", (cell_table if cell_table is not None else torch.zeros(1, 0)).float()
        )
        self.input_dropout = nn.Dropout(config.input_dropout)
        hidden = [config.hidden_dim] * config.n_hidden
        if config.architecture == "symmetric":
            self.drug_encoder = _mlp(
                [config.n_drug_features, config.hidden_dim, config.drug_dim], config.dropout
            )
            self.cell_encoder = _mlp([n_cell, config.cell_dim], config.dropout) if n_cell else None
            head_in = 2 * config.drug_dim + (config.cell_dim if n_cell else 0)
        elif config.architecture == "concat":
            self.drug_encoder = self.cell_encoder = None
            head_in = 2 * config.n_drug_features + n_cell
        else:
            msg = f"architecture must be 'symmetric' or 'concat', got {config.architecture!r}"
            raise ValueError(msg)
        self.head = _mlp([head_in, *hidden, 1], config.dropout)

    def forward(
        self, drug_a: torch.Tensor, drug_b: torch.Tensor, cell: torch.Tensor
    ) -> torch.Tensor:
        """``(B,)`` outputs for ``(B,)`` index tensors into the drug and cell-line tables."""
        if self.config.architecture == "concat":
            return self.head[1:](self.concat_first_layer(drug_a, drug_b, cell)).squeeze(1)
        return self.head(self.pair_features(drug_a, drug_b, cell)).squeeze(1)

    def concat_first_layer(
        self, drug_a: torch.Tensor, drug_b: torch.Tensor, cell: torch.Tensor
    ) -> torch.Tensor:
        """The first linear layer of the ``"concat"`` MLP applied to ``[x_a, x_b, x_cell]``.

        The layer is split into its drug-A, drug-B and cell-line column blocks, each applied to
        the distinct rows of the batch only (the same linear map, far fewer operations).
        """
        first, n_drug = self.head[0], self.config.n_drug_features
        used, inverse = torch.unique(torch.cat([drug_a, drug_b]), return_inverse=True)
        drugs = self.input_dropout(self.drug_table[used])
        out = (drugs @ first.weight[:, :n_drug].T)[inverse[: len(drug_a)]]
        out = out + (drugs @ first.weight[:, n_drug : 2 * n_drug].T)[inverse[len(drug_a) :]]
        if self.config.n_cell_features:
            lines, line_inverse = torch.unique(cell, return_inverse=True)
            weight = first.weight[:, 2 * n_drug :]
            out = out + (self.input_dropout(self.cell_table[lines]) @ weight.T)[line_inverse]
        return out + first.bias

    def pair_features(
        self, drug_a: torch.Tensor, drug_b: torch.Tensor, cell: torch.Tensor
    ) -> torch.Tensor:
        """Input of the head: ``[h_a + h_b, h_a * h_b, h_cell]``, identical for swapped drugs.

        Each distinct drug of the batch is encoded once; sum and product are commutative in
        floating point, so swapping ``drug_a`` and ``drug_b`` gives bit-identical features.
        """
        used, inverse = torch.unique(torch.cat([drug_a, drug_b]), return_inverse=True)
        encoded = torch.relu(self.drug_encoder(self.input_dropout(self.drug_table[used])))
        h_a, h_b = encoded[inverse[: len(drug_a)]], encoded[inverse[len(drug_a) :]]
        parts = [h_a + h_b, h_a * h_b]
        if self.cell_encoder is not None:
            lines, line_inverse = torch.unique(cell, return_inverse=True)
            encoded_lines = torch.relu(
                self.cell_encoder(self.input_dropout(self.cell_table[lines]))
            )
            parts.append(encoded_lines[line_inverse])
        return torch.cat(parts, dim=1)
