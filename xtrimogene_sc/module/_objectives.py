"""The optional cell-level objectives of pretraining: the whole-profile read-out, contrastive.

Masked regression trains gene-level predictions; these terms ask the pooled cell vector itself
to carry the cell. Both are off unless their weight in :class:`~xtrimogene_sc.XTrimoGeneConfig`
is positive, and then their heads exist (a model without them has none in its state dict).
:class:`CellObjectives` is a mixin of :class:`~xtrimogene_sc.module.XTrimoGeneModule`, so the
parameter names of saved models stay as they were.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.module._pooling import masked_mean

if TYPE_CHECKING:
    from xtrimogene_sc.data._batch import SparseCells
    from xtrimogene_sc.module._config import XTrimoGeneConfig
    from xtrimogene_sc.module._outputs import EncoderOutput


class CellObjectives:
    """Heads and losses of the cell-level objectives (``contrastive_*``, ``cell_reconstruction_*``)."""

    config: XTrimoGeneConfig
    gene_embedding: nn.Embedding
    cell_target_mean: torch.Tensor
    cell_target_var: torch.Tensor
    cell_target_batches: torch.Tensor

    def _build_cell_objectives(self, config: XTrimoGeneConfig) -> None:
        """Create the heads the objective asks for (their order fixes the initialisation)."""
        c, o = config, config.objective
        # ---- optional cell-level loss (objective.contrastive_weight); absent from the state dict when off
        self.contrastive_head = (
            nn.Sequential(
                nn.Linear(c.encoder_dim, c.encoder_dim),
                nn.GELU(),
                nn.Linear(c.encoder_dim, c.encoder_dim),
            )
            if o.contrastive_weight > 0
            else None
        )
        # ---- optional whole-profile read-out (objective.cell_reconstruction_weight); same rule
        tied = o.cell_reconstruction_query == "tied"  # the query is the gene's own embedding
        self.cell_query = (
            nn.Sequential(
                nn.Linear(c.encoder_dim, c.encoder_dim),
                nn.GELU(),
                nn.Linear(c.encoder_dim, 1 if tied else c.encoder_dim + 1),  # [query,] offset
            )
            if o.cell_reconstruction_weight > 0
            else None
        )
        self.cell_gain = (
            nn.Parameter(torch.ones(())) if o.cell_reconstruction_weight > 0 and tied else None
        )
        self.cell_norm = (
            nn.BatchNorm1d(c.encoder_dim, affine=False)
            if o.cell_reconstruction_weight > 0
            else None
        )
        # ---- optional per-batch gene offsets of that read-out (objective.batch_readout)
        self.cell_batch_offset = (
            nn.Embedding(o.n_batches, TOKENS.N_GENES)
            if self.cell_query is not None and o.batch_readout and o.n_batches > 1
            else None
        )
        if o.cell_reconstruction_weight > 0 and o.cell_reconstruction_scaled:
            # running per-gene statistics of the read-out's target (config docstring)
            self.register_buffer("cell_target_mean", torch.zeros(TOKENS.N_GENES))
            self.register_buffer("cell_target_var", torch.ones(TOKENS.N_GENES))
            self.register_buffer("cell_target_batches", torch.zeros((), dtype=torch.long))

    def add_cell_objectives(
        self,
        loss: torch.Tensor,
        enc: EncoderOutput,
        cells: SparseCells,
        candidates: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """``loss`` plus each configured cell-level term, weighted."""
        o = self.config.objective
        if self.cell_query is not None:
            loss = loss + o.cell_reconstruction_weight * self._cell_reconstruction_loss(
                enc, cells.target or cells, candidates, cells.batch
            )
        if self.contrastive_head is not None:
            other = self.encode(*self._second_view(cells, generator))
            loss = loss + o.contrastive_weight * self._contrastive_loss(enc, other)
        return loss

    def _second_view(
        self, cells: SparseCells, generator: torch.Generator | None
    ) -> tuple[SparseCells, torch.Tensor | None]:
        """Encoder input of the cell-level loss's second view (``config.objective.contrastive_view``)."""
        device = cells.pos.device
        if self.config.objective.contrastive_view == "thin":  # the cells at 10-100% of their depth
            rate = 0.1 + 0.9 * torch.rand(cells.n_cells, device=device, generator=generator)
            return cells.downsampled(rate, generator), None
        draw = torch.rand(cells.pos.shape, device=device, generator=generator)
        return (
            cells,
            draw >= self.config.objective.mask_ratio_nonzero,
        )  # an independent gene sample

    def _cell_reconstruction_loss(
        self,
        enc: EncoderOutput,
        target: SparseCells,
        candidates: torch.Tensor | None,
        batch: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """MSE of every scorable gene's value predicted from the pooled cell embedding alone.

        The cell's batch offsets are added when the read-out has them and the cells carry a batch.
        """
        device = enc.hidden.device
        scored = (
            torch.arange(TOKENS.N_GENES, device=device)
            if candidates is None
            else candidates.nonzero().squeeze(1)
        )
        dense = torch.zeros(target.n_cells, TOKENS.N_POSITIONS, device=device)
        dense[target.row_ids(), target.pos] = target.value.float()
        # a sparse gradient: the rows of the scored genes only, added to the encoder's dense one
        genes = nn.functional.embedding(scored, self.gene_embedding.weight, sparse=True)
        cell = masked_mean(enc).float()  # (B, De)
        if self.cell_gain is not None:
            prediction = self._tied_prediction(cell, genes.float())
        else:
            query = self.cell_query(genes).float()  # (G, De + 1)
            norm = self.cell_norm
            cell = nn.functional.batch_norm(  # a batch of one cell: running statistics
                cell, norm.running_mean, norm.running_var, eps=norm.eps,
                momentum=norm.momentum, training=self.training and cell.shape[0] > 1,
            )  # fmt: skip
            prediction = cell @ query[:, :-1].T / cell.shape[1] ** 0.5 + query[:, -1]
        if self.cell_batch_offset is not None and batch is not None:
            # (B, G): each cell's offsets at the scored genes only, not all 19,264 a cell
            prediction = prediction + self.cell_batch_offset.weight[batch[:, None], scored]
        wanted = dense[:, scored]
        if self.config.objective.cell_reconstruction_scaled:
            wanted = self._scaled_cell_target(wanted, scored)
        return nn.functional.mse_loss(prediction, wanted)

    def _tied_prediction(self, cell: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
        """``(B, G)`` predictions of the tied read-out (``cell_reconstruction_query="tied"``).

        The pooled cells are centred and divided by **one** spread (the mean variance over
        dimensions), so no dimension is rescaled on its own, and each gene's query is its own
        embedding (the table of scored genes normalised to unit root-mean-square column norm).
        """
        norm = self.cell_norm
        if self.training and cell.shape[0] > 1:
            mean, var = cell.mean(0), cell.var(0)
            with torch.no_grad():
                norm.running_mean.lerp_(mean.detach(), norm.momentum)
                norm.running_var.lerp_(var.detach(), norm.momentum)
        else:  # evaluation, or a batch of one cell: running statistics
            mean, var = norm.running_mean, norm.running_var
        centred = (cell - mean) / (var.mean() + norm.eps).sqrt()
        table = genes / (genes.pow(2).sum(0).mean().sqrt() + 1e-8)
        offset = self.cell_query(genes.detach()).squeeze(-1).float()  # per-gene offset only
        return self.cell_gain * (centred @ table.T) + offset

    @torch.no_grad()
    def _scaled_cell_target(self, values: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
        """``(B, G)`` values of the ``scored`` genes as z-scores under running statistics.

        A training batch of two or more cells updates the statistics first.
        """
        mean, var = self.cell_target_mean[scored], self.cell_target_var[scored]
        if self.training and values.shape[0] > 1:
            self.cell_target_batches += 1
            weight = self.cell_target_batches.reciprocal().clamp_min(0.01)  # no host sync
            mean = torch.lerp(mean, values.mean(0), weight)
            var = torch.lerp(var, values.var(0), weight)
            self.cell_target_mean[scored], self.cell_target_var[scored] = mean, var
        return ((values - mean) / var.clamp_min(0.01).sqrt()).clamp(-10.0, 10.0)

    def _contrastive_loss(self, view_a: EncoderOutput, view_b: EncoderOutput) -> torch.Tensor:
        """Symmetric InfoNCE between the pooled embeddings of two views of the same cells."""
        za, zb = (
            nn.functional.normalize(self.contrastive_head(masked_mean(v)).float(), dim=-1)
            for v in (view_a, view_b)
        )
        logits = za @ zb.T / self.config.objective.contrastive_temperature
        labels = torch.arange(za.shape[0], device=za.device)
        return 0.5 * (
            nn.functional.cross_entropy(logits, labels)
            + nn.functional.cross_entropy(logits.T, labels)
        )
