"""Perturbation-response head on an xTrimoGene encoder (pure torch).

Dimension letters: ``B`` (control cell, condition) pairs, ``M`` members of a condition (padded;
the genes of a combination, or one treatment), ``S`` members seen in training, ``H`` hidden
width, ``G`` predicted genes.

Every member seen in training (a gene or a treatment) has a learned embedding ``v``. With the
encoded cell state ``s``, a member contributes ``u(v, s)`` (an MLP) to the shift, and the shift
of the cell's log-normalised profile is additive over the members plus an interaction term for
combinations::

    shift = W sum_m u_m + M b + [interaction][M > 1] W_int w(sum_m v_m, s) + d sum_m onehot(m)

The interaction term is optional (``interaction=True``) and starts at zero, so an untrained one
leaves combinations additive. For genetic
conditions the last term is the direct effect of a perturbation on the perturbed gene itself
(e.g. a CRISPRi knockdown lowers its target), one learned value ``d`` shared by all genes, so
that a gene never perturbed in training still changes itself.

A gene never seen perturbed borrows its contribution through the backbone's gene embeddings
``e``: ``u(g) = sum_s a_gs u(v_s, s)``, ``a_g = softmax_s(beta cos(e_g, e_s))`` over the seen
genes, with one learned sharpness ``beta``. Every training step also scores a second pass in
which each seen gene borrows with probability ``transfer_prob`` (never attending to itself). In
that pass the seen genes' contributions are held fixed (no gradient), so it is a leave-one-out
fit of ``beta`` alone (and of the shared bias, direct and interaction terms), not a way for the
seen genes to co-adapt: ``beta`` learns how far the backbone's gene similarities predict
responses, and falls towards zero (the mean contribution of the seen genes) when they do not.
"""

from __future__ import annotations

import torch
from torch import nn

from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.module._freezing import freeze_backbone
from xtrimogene_sc.module._module import XTrimoGeneModule
from xtrimogene_sc.module._pooling import Pooling


def _mlp(in_dim: int, hidden_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_dim, hidden_dim),
        nn.GELU(),
    )


class PerturbationHead(nn.Module):
    """Shift of a cell's log-normalised profile under a condition.

    Parameters
    ----------
    state_dim
        Width of the (standardised) cell state.
    n_genes
        Predicted genes ``G``.
    seen
        Number of members seen in training ``S`` (treatments, or perturbed genes).
    hidden_dim
        Hidden width ``H``.
    dropout
        Dropout inside the MLPs.
    gene_features
        ``(n_positions, d)`` frozen gene representation indexed by vocabulary position
        (genetic conditions); ``None`` for treatments, which cannot be borrowed.
    seen_ids
        ``(S,)`` vocabulary position of each seen gene (genetic conditions).
    output_positions
        ``(G,)`` vocabulary position of each predicted gene (genetic conditions: where the direct
        effect on a perturbed gene goes).
    transfer_prob
        Probability that a seen gene borrows in the second, borrowing pass of a training step
        (see :meth:`draw_borrowing`).
    interaction
        Learn a non-additive term for combinations.
    """

    def __init__(
        self,
        *,
        state_dim: int,
        n_genes: int,
        seen: int,
        hidden_dim: int = 128,
        dropout: float = 0.1,
        gene_features: torch.Tensor | None = None,
        seen_ids: torch.Tensor | None = None,
        output_positions: torch.Tensor | None = None,
        transfer_prob: float = 0.5,
        interaction: bool = False,
    ) -> None:
        super().__init__()
        if (gene_features is None) != (seen_ids is None):
            msg = "gene_features and seen_ids go together (genetic conditions)"
            raise ValueError(msg)
        self.genetic = gene_features is not None
        self.transfer_prob = transfer_prob
        self.use_interaction = interaction
        self.member_embedding = nn.Embedding(seen, hidden_dim)
        nn.init.normal_(self.member_embedding.weight, std=0.1)
        if gene_features is not None and seen_ids is not None:
            unit = nn.functional.normalize(gene_features.float(), dim=1)
            self.register_buffer("gene_features", unit)  # unit rows: dot product = cosine
            self.register_buffer("seen_ids", seen_ids.long())
            index = torch.full((gene_features.shape[0],), -1, dtype=torch.long)
            index[seen_ids] = torch.arange(len(seen_ids))
            self.register_buffer("seen_index", index)
            self.log_sharpness = nn.Parameter(torch.tensor(1.5))  # beta = e^1.5 ~ 4.5
            output_index = torch.full((gene_features.shape[0],), -1, dtype=torch.long)
            if output_positions is not None:
                output_index[output_positions] = torch.arange(len(output_positions))
            self.register_buffer("output_index", output_index)
            self.direct_effect = nn.Parameter(torch.zeros(()))
        self.state_encoder = nn.Sequential(nn.Linear(state_dim, hidden_dim), nn.GELU())
        self.single = _mlp(2 * hidden_dim, hidden_dim, dropout)
        self.interaction = _mlp(2 * hidden_dim, hidden_dim, dropout)
        self.out = nn.Linear(hidden_dim, n_genes, bias=False)
        self.out_bias = nn.Parameter(torch.zeros(n_genes))
        self.out_interaction = nn.Linear(hidden_dim, n_genes, bias=False)
        nn.init.zeros_(self.out_interaction.weight)

    def attention(self, positions: torch.Tensor) -> torch.Tensor:
        """Weights ``(..., S)`` of the seen genes for genes at vocabulary ``positions``.

        A seen gene never attends to itself.
        """
        similarity = self.gene_features[positions] @ self.gene_features[self.seen_ids].T
        logits = self.log_sharpness.exp() * similarity
        itself = positions[..., None] == self.seen_ids
        return logits.masked_fill(itself, torch.finfo(logits.dtype).min).softmax(dim=-1)

    def draw_borrowing(self, member_mask: torch.Tensor) -> torch.Tensor | None:
        """Random ``(B, M)`` choice of seen genes that borrow (training), ``None`` if none can."""
        if not self.genetic or self.transfer_prob <= 0:
            return None
        draw = torch.rand(member_mask.shape, device=member_mask.device) < self.transfer_prob
        return draw & member_mask

    def _borrow(self, members: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Borrowed ``u`` and ``v`` ``(B, M, H)`` of every member, from detached seen genes."""
        weights = self.attention(members)  # (B, M, S)
        seen_v = self.member_embedding.weight.detach()  # (S, H)
        pairs = torch.cat(
            [seen_v.expand(len(s), -1, -1), s.detach()[:, None].expand(-1, len(seen_v), -1)], -1
        )
        seen_u = self.single(pairs).detach()  # (B, S, H)
        return weights @ seen_u, weights @ seen_v

    def forward(
        self,
        state: torch.Tensor,
        members: torch.Tensor,
        member_mask: torch.Tensor,
        borrow: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Shift ``(B, G)`` for cell states ``(B, D)`` and members ``(B, M)`` (mask True = real).

        ``members`` holds seen-member indices for treatments and vocabulary positions for genes.
        Genes never seen in training always borrow; ``borrow`` (``(B, M)``) makes seen ones
        borrow too.
        """
        s = self.state_encoder(state)  # (B, H)
        own = members if not self.genetic else self.seen_index[members].clamp_min(0)
        v = self.member_embedding(own)  # (B, M, H)
        u = self.single(torch.cat([v, s[:, None].expand_as(v)], dim=-1))  # (B, M, H)
        borrowing = torch.zeros_like(member_mask)
        if self.genetic:
            borrowing = (self.seen_index[members] < 0) & member_mask
        if borrow is not None:
            borrowing = borrowing | (borrow & member_mask)
        mask = member_mask[..., None].to(u.dtype)
        n_members = mask.sum(dim=1)  # (B, 1)
        shift = (
            self.out((u * (mask * ~borrowing[..., None])).sum(dim=1)) + n_members * self.out_bias
        )
        if borrowing.any():
            borrowed_u, borrowed_v = self._borrow(members, s)
            v = torch.where(borrowing[..., None], borrowed_v, v)
            # fixed seen contributions: the borrowing pass can only learn how to weigh them
            weight = self.out.weight.detach()
            shift = shift + nn.functional.linear(
                (borrowed_u * borrowing[..., None]).sum(1), weight
            )
        if self.use_interaction:
            w = self.interaction(torch.cat([(v * mask).sum(dim=1), s], dim=-1))
            shift = shift + (n_members > 1).to(u.dtype) * self.out_interaction(w)
        if self.genetic:
            shift = self._add_direct_effect(shift, members, member_mask)
        return shift

    def _add_direct_effect(
        self, shift: torch.Tensor, members: torch.Tensor, member_mask: torch.Tensor
    ) -> torch.Tensor:
        target = self.output_index[members]  # (B, M) predicted-gene index of each member
        hit = (target >= 0) & member_mask
        effect = hit.to(shift.dtype) * self.direct_effect
        return shift.scatter_add(1, target.clamp_min(0), effect)


class PerturbationModule(nn.Module):
    """An xTrimoGene backbone (cell states) with a :class:`PerturbationHead`.

    Parameters
    ----------
    backbone
        The encoder that turns control cells into states; frozen except its last
        ``n_trainable_layers`` encoder blocks (and the final encoder norm).
    head
        The response head.
    pooling
        Pooling of the encoder output into a cell state.
    n_trainable_layers
        Encoder blocks fine-tuned with the head, counted from the last; 0 freezes the backbone.
    """

    def __init__(
        self,
        backbone: XTrimoGeneModule,
        head: PerturbationHead,
        *,
        pooling: Pooling = "concat",
        n_trainable_layers: int = 0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pooling = pooling
        state_dim = head.state_encoder[0].in_features
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_scale", torch.ones(state_dim))
        freeze_backbone(backbone, n_trainable_layers)
        self.n_trainable_layers = n_trainable_layers

    def train(self, mode: bool = True) -> PerturbationModule:
        """The backbone always runs without dropout (its states feed a regression)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def raw_state(self, cells: SparseCells) -> torch.Tensor:
        """Pooled encoder output ``(B, D)`` before standardisation."""
        return self.backbone.embed_cells(cells, pooling=self.pooling).float()

    def standardise(self, raw_state: torch.Tensor) -> torch.Tensor:
        """Cell states on the scale the head was trained on."""
        return (raw_state - self.state_mean) / self.state_scale

    def forward(
        self, cells: SparseCells, members: torch.Tensor, member_mask: torch.Tensor
    ) -> torch.Tensor:
        """Shift ``(B, G)`` of each cell of ``cells`` under its members."""
        return self.head(self.standardise(self.raw_state(cells)), members, member_mask)
