"""The asymmetric xTrimoGene encoder-decoder (pure torch).

Dimension letters used in comments: ``B`` cells, ``K`` encoder tokens per cell (padded), ``L``
decoder length (19,266 with depth tokens, else 19,264), ``De``/``Dd`` encoder/decoder widths.

* The encoder (exact attention) sees only the non-zero, unmasked genes of a cell plus T and S.
* The decoder (FAVOR+) sees every position: encoder outputs scattered back, the learned mask
  embedding at masked positions, the zero-value embedding elsewhere. Because the zero embedding
  and the gene embedding do not depend on the cell, their projection into the decoder is computed
  once per batch, not once per cell.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.module._batch import SparseCells
from xtrimogene_sc.module._config import XTrimoGeneConfig
from xtrimogene_sc.module._outputs import EncoderOutput, PretrainOutput
from xtrimogene_sc.module._pooling import Pooling, check_pooling, masked_mean, pool_tokens
from xtrimogene_sc.nn._blocks import DecoderBlock, EncoderBlock
from xtrimogene_sc.nn._embedding import AutoDiscretizationEmbedding
from xtrimogene_sc.nn._masking import cap_kept_entries, pack_rows, sample_masks, sort_entries


class XTrimoGeneModule(nn.Module):
    """xTrimoGene asymmetric masked autoencoder over the gene vocabulary.

    Parameters
    ----------
    config
        Hyper-parameters; see :class:`~xtrimogene_sc.XTrimoGeneConfig`.
    """

    def __init__(self, config: XTrimoGeneConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        # ---- encoder side
        self.value_embedding = AutoDiscretizationEmbedding(
            c.encoder_dim, bin_num=c.bin_num, bin_alpha=c.bin_alpha
        )
        self.gene_embedding = nn.Embedding(TOKENS.N_POSITIONS, c.encoder_dim)
        self.encoder_blocks = nn.ModuleList(
            EncoderBlock(
                c.encoder_dim,
                c.encoder_heads,
                ff_mult=c.ff_mult,
                dropout=c.encoder_dropout,
                attention_dropout=c.attention_dropout,
            )  # fmt: skip
            for _ in range(c.encoder_depth)
        )
        self.encoder_norm = nn.LayerNorm(c.encoder_dim)
        # ---- decoder side
        self.decoder_embed = nn.Linear(c.encoder_dim, c.decoder_dim)
        self.decoder_blocks = nn.ModuleList(
            DecoderBlock(
                c.decoder_dim,
                c.decoder_heads,
                ff_mult=c.ff_mult,
                nb_features=c.decoder_nb_features,
                redraw_interval=c.feature_redraw_interval,
                seed=c.seed * 100 + i,
            )
            for i in range(c.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(c.decoder_dim)
        self.head_norm = nn.LayerNorm(c.decoder_dim)
        self.head = nn.Linear(c.decoder_dim, 1)
        # ---- optional cell-level loss (config.contrastive_weight); absent from the state dict when off
        self.contrastive_head = (
            nn.Sequential(
                nn.Linear(c.encoder_dim, c.encoder_dim),
                nn.GELU(),
                nn.Linear(c.encoder_dim, c.encoder_dim),
            )
            if c.contrastive_weight > 0
            else None
        )
        # ---- optional whole-profile read-out (config.cell_reconstruction_weight); same rule
        tied = c.cell_reconstruction_query == "tied"  # the query is the gene's own embedding
        self.cell_query = (
            nn.Sequential(
                nn.Linear(c.encoder_dim, c.encoder_dim),
                nn.GELU(),
                nn.Linear(c.encoder_dim, 1 if tied else c.encoder_dim + 1),  # [query,] offset
            )
            if c.cell_reconstruction_weight > 0
            else None
        )
        self.cell_gain = (
            nn.Parameter(torch.ones(())) if c.cell_reconstruction_weight > 0 and tied else None
        )
        self.cell_norm = (
            nn.BatchNorm1d(c.encoder_dim, affine=False)
            if c.cell_reconstruction_weight > 0
            else None
        )
        if c.cell_reconstruction_weight > 0 and c.cell_reconstruction_scaled:
            # running per-gene statistics of the read-out's target (config docstring)
            self.register_buffer("cell_target_mean", torch.zeros(TOKENS.N_GENES))
            self.register_buffer("cell_target_var", torch.ones(TOKENS.N_GENES))
            self.register_buffer("cell_target_batches", torch.zeros((), dtype=torch.long))
        self.apply(_init_weights)
        # ---- gene panel (config.input_positions): not a weight, rebuilt from the config
        panel = None
        if c.input_positions is not None:
            panel = torch.zeros(TOKENS.N_GENES, dtype=torch.bool)
            panel[list(c.input_positions)] = True
        self.register_buffer("input_panel", panel, persistent=False)

    @property
    def decoder_length(self) -> int:
        """Number of decoder positions ``L``."""
        return TOKENS.SEQ_LEN if self.config.use_depth_tokens else TOKENS.N_GENES

    def select_inputs(self, cells: SparseCells) -> SparseCells:
        """``cells`` restricted to the model's gene panel (unchanged when it reads every gene).

        Every public entry point applies it, so a cell can be passed with all its genes.
        """
        return cells if self.input_panel is None else cells.select_genes(self.input_panel)

    # ------------------------------------------------------------------ encoder
    def encode(self, cells: SparseCells, keep: torch.Tensor | None = None) -> EncoderOutput:
        """Run the encoder on the non-zero genes (``keep`` selects a subset) plus T and S."""
        rows, positions, values = cells.row_ids(), cells.pos, cells.value
        if keep is not None:
            rows, positions, values = rows[keep], positions[keep], values[keep]
        if self.config.use_depth_tokens:
            cell_ids = torch.arange(cells.n_cells, device=rows.device)
            rows = torch.cat([rows, cell_ids, cell_ids])
            positions = torch.cat(
                [
                    positions,
                    torch.full_like(cell_ids, TOKENS.T_POS),
                    torch.full_like(cell_ids, TOKENS.S_POS),
                ]
            )
            values = torch.cat(
                [values, cells.depth_t.to(values.dtype), cells.depth_s.to(values.dtype)]
            )
            order = sort_entries(rows, positions, TOKENS.N_POSITIONS)
            rows, positions, values = rows[order], positions[order], values[order]
        token_pos, token_values, valid = pack_rows(
            rows, positions, values, n_rows=cells.n_cells, pad_position=TOKENS.PAD_POS
        )
        x = self.value_embedding(token_values) + self.gene_embedding(token_pos)  # (B, K, De)
        x = self._run_blocks(self.encoder_blocks, x, valid)
        return EncoderOutput(self.encoder_norm(x), token_pos, valid)

    def _run_blocks(
        self, blocks: nn.ModuleList, x: torch.Tensor, valid: torch.Tensor | None
    ) -> torch.Tensor:
        """Apply ``blocks`` in turn, recomputing activations in backward if configured."""
        recompute = (
            self.config.gradient_checkpointing and self.training and torch.is_grad_enabled()
        )
        for block in blocks:
            x = checkpoint(block, x, valid, use_reentrant=False) if recompute else block(x, valid)
        return x

    def embed_cells(self, cells: SparseCells, pooling: Pooling = "concat") -> torch.Tensor:
        """Cell embeddings from the encoder, pooled with explicit masks (batch-size independent).

        See :func:`~xtrimogene_sc.module._pooling.pool_tokens` for the poolings.
        """
        check_pooling(pooling, self.config)
        return pool_tokens(self.encode(self.select_inputs(cells)), pooling, self.config)

    # ------------------------------------------------------------------ decoder
    def _project(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.decoder_embed(hidden + self.gene_embedding(positions))

    def _run_decoder(self, z: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder_norm(self._run_blocks(self.decoder_blocks, z, valid))

    def _predict(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_norm(z)).squeeze(-1)

    def _full_decoder_input(
        self, enc: EncoderOutput, masked_rows: torch.Tensor, masked_pos: torch.Tensor
    ) -> torch.Tensor:
        """``(B, L, Dd)``: zero embedding everywhere, mask embedding and encoder outputs scattered in."""
        length = self.decoder_length
        all_pos = torch.arange(length, device=enc.hidden.device)
        zero = self.value_embedding.zero_embedding()
        base = self._project(zero.expand(length, -1), all_pos)  # (L, Dd), shared by every cell
        z = base.unsqueeze(0).repeat(enc.hidden.shape[0], 1, 1)
        mask_vec = self.value_embedding.mask_embedding.expand(masked_pos.numel(), -1)
        z[masked_rows, masked_pos] = self._project(mask_vec, masked_pos).to(z.dtype)
        rows, slots = enc.valid.nonzero(as_tuple=True)
        positions = enc.positions[rows, slots]
        z[rows, positions] = self._project(enc.hidden[rows, slots], positions).to(z.dtype)
        return z

    def decode_context(self, cells: SparseCells) -> torch.Tensor:
        """Gene context embeddings ``(B, L, Dd)``: the decoder output with nothing masked.

        As in the reference, the decoder's LayerNorm and then the model's final LayerNorm (the one
        before the regression head) are applied.
        """
        enc = self.encode(self.select_inputs(cells))
        empty = torch.empty(0, dtype=torch.long, device=enc.hidden.device)
        return self.head_norm(self._run_decoder(self._full_decoder_input(enc, empty, empty)))

    def reconstruct(
        self,
        cells: SparseCells,
        masked_rows: torch.Tensor | None = None,
        masked_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted values at every decoder position ``(B, L)``, through the full decoder.

        ``masked_rows``/``masked_pos`` (same length, sorted by row then position) name entries to
        hide: an expressed gene among them is left out of the encoder, and every masked position
        carries the mask embedding in the decoder. With nothing masked this is the reference
        ``gene_expression`` output.
        """
        device = cells.pos.device
        cells = self.select_inputs(cells)
        if masked_rows is None or masked_pos is None:
            masked_rows = masked_pos = torch.empty(0, dtype=torch.long, device=device)
        keys = cells.row_ids() * TOKENS.N_POSITIONS + cells.pos
        hidden = torch.isin(keys, masked_rows * TOKENS.N_POSITIONS + masked_pos)
        enc = self.encode(cells, keep=None if not bool(hidden.any()) else ~hidden)
        return self._predict(
            self._run_decoder(self._full_decoder_input(enc, masked_rows, masked_pos))
        )

    # ------------------------------------------------------------------ pretraining
    def forward(
        self, cells: SparseCells, generator: torch.Generator | None = None
    ) -> PretrainOutput:
        """Mask, encode the kept tokens, decode, and regress the masked values (MSE)."""
        c = self.config
        for block in self.decoder_blocks:  # one training step: FAVOR+ features redraw when due
            block.attn.kernel.maybe_redraw()
        cells = self.select_inputs(cells)
        candidates = cells.observed if c.zero_mask_scope == "observed" else None
        if self.input_panel is not None:
            candidates = self.input_panel if candidates is None else candidates & self.input_panel
        nonzero_masked, zero_masked = sample_masks(
            cells.crow,
            TOKENS.N_GENES,
            p_nonzero=c.mask_ratio_nonzero,
            p_zero=c.mask_ratio_zero,
            positions=cells.pos,
            keep_at_least_one=not c.use_depth_tokens,
            candidates=candidates,
            generator=generator,
        )
        if c.max_encoder_genes is not None:
            nonzero_masked = cap_kept_entries(
                nonzero_masked, cells.crow, c.max_encoder_genes, generator=generator
            )
        enc = self.encode(cells, keep=~nonzero_masked)
        rows = cells.row_ids()
        zero_rows, zero_pos = zero_masked.nonzero(as_tuple=True)
        masked_rows = torch.cat([rows[nonzero_masked], zero_rows])
        masked_pos = torch.cat([cells.pos[nonzero_masked], zero_pos])
        order = sort_entries(masked_rows, masked_pos, TOKENS.N_POSITIONS)
        masked_rows, masked_pos = masked_rows[order], masked_pos[order]
        if c.decoder_mode == "full":
            prediction = self._predict(
                self._run_decoder(self._full_decoder_input(enc, masked_rows, masked_pos))
            )
            prediction = prediction[masked_rows, masked_pos]
        else:
            prediction = self._decode_masked_only(enc, masked_rows, masked_pos)
        target = _lookup(cells.target or cells, masked_rows, masked_pos)
        masked_mse = nn.functional.mse_loss(prediction.float(), target, reduction="sum") / max(
            1, target.numel()
        )
        loss = masked_mse
        if self.cell_query is not None:
            loss = loss + c.cell_reconstruction_weight * self._cell_reconstruction_loss(
                enc, cells.target or cells, candidates
            )
        if self.contrastive_head is not None:
            other = self.encode(*self._second_view(cells, generator))
            loss = loss + c.contrastive_weight * self._contrastive_loss(enc, other)
        return PretrainOutput(
            loss, int(target.numel()), prediction.detach(), target, masked_rows, masked_pos,
            masked_mse=masked_mse.detach(),
        )  # fmt: skip

    def _second_view(
        self, cells: SparseCells, generator: torch.Generator | None
    ) -> tuple[SparseCells, torch.Tensor | None]:
        """Encoder input of the cell-level loss's second view (``config.contrastive_view``)."""
        device = cells.pos.device
        if self.config.contrastive_view == "thin":  # the cells at 10-100% of their depth
            rate = 0.1 + 0.9 * torch.rand(cells.n_cells, device=device, generator=generator)
            return cells.downsampled(rate, generator), None
        draw = torch.rand(cells.pos.shape, device=device, generator=generator)
        return cells, draw >= self.config.mask_ratio_nonzero  # an independent gene sample

    def _cell_reconstruction_loss(
        self, enc: EncoderOutput, target: SparseCells, candidates: torch.Tensor | None
    ) -> torch.Tensor:
        """MSE of every scorable gene's value predicted from the pooled cell embedding alone."""
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
        wanted = dense[:, scored]
        if self.config.cell_reconstruction_scaled:
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
        logits = za @ zb.T / self.config.contrastive_temperature
        labels = torch.arange(za.shape[0], device=za.device)
        return 0.5 * (
            nn.functional.cross_entropy(logits, labels)
            + nn.functional.cross_entropy(logits.T, labels)
        )

    def _decode_masked_only(
        self, enc: EncoderOutput, masked_rows: torch.Tensor, masked_pos: torch.Tensor
    ) -> torch.Tensor:
        """Decode encoder tokens plus masked positions only; returns predictions at masked entries."""
        rows, slots = enc.valid.nonzero(as_tuple=True)
        enc_hidden = enc.hidden[rows, slots]
        mask_vec = self.value_embedding.mask_embedding.expand(masked_pos.numel(), -1)
        all_rows = torch.cat([rows, masked_rows])
        all_pos = torch.cat([enc.positions[rows, slots], masked_pos])
        # one projection of both kinds of token: one gene-embedding lookup (and gradient) a step
        dtype = torch.promote_types(enc_hidden.dtype, mask_vec.dtype)  # as adding them would
        feat = self._project(torch.cat([enc_hidden.to(dtype), mask_vec.to(dtype)]), all_pos)
        is_masked = torch.cat(
            [
                torch.zeros_like(rows, dtype=torch.bool),
                torch.ones_like(masked_rows, dtype=torch.bool),
            ]
        )
        order = sort_entries(all_rows, all_pos, TOKENS.N_POSITIONS)
        payload = torch.cat([feat[order], is_masked[order, None].to(feat.dtype)], dim=1)
        _, packed, valid = pack_rows(
            all_rows[order],
            all_pos[order],
            payload,
            n_rows=enc.hidden.shape[0],
            pad_position=TOKENS.PAD_POS,
        )
        z, flag = packed[..., :-1], packed[..., -1] > 0.5
        prediction = self._predict(self._run_decoder(z, valid))  # (B, K')
        return prediction[flag]  # row-major order == (row, pos) sorted order of the masked entries


def _lookup(cells: SparseCells, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Values of ``cells`` at (row, position) pairs; zero where the cell has no entry."""
    keys = cells.row_ids() * TOKENS.N_POSITIONS + cells.pos  # ascending
    query = rows * TOKENS.N_POSITIONS + positions
    idx = torch.searchsorted(keys, query).clamp_max(max(keys.numel() - 1, 0))
    if keys.numel() == 0:
        return torch.zeros(query.shape, dtype=torch.float32, device=query.device)
    found = keys[idx] == query
    return torch.where(found, cells.value[idx].float(), torch.zeros((), device=query.device))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
