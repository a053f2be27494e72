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

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.module._config import XTrimoGeneConfig
from xtrimogene_sc.module._objectives import CellObjectives
from xtrimogene_sc.module._outputs import EncoderOutput, MaskedEntries, PretrainOutput
from xtrimogene_sc.module._pooling import Pooling, check_pooling, pool_tokens
from xtrimogene_sc.nn._blocks import DecoderBlock, EncoderBlock
from xtrimogene_sc.nn._embedding import AutoDiscretizationEmbedding
from xtrimogene_sc.nn._masking import cap_kept_entries, pack_rows, sort_entries
from xtrimogene_sc.nn._masking import sample_masks as draw_masks


class XTrimoGeneModule(CellObjectives, nn.Module):
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
        self._build_cell_objectives(c)  # the optional cell-level heads, in this order
        self.apply(_init_weights)
        if self.cell_batch_offset is not None:  # training starts from the plain read-out
            nn.init.zeros_(self.cell_batch_offset.weight)
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
        self, blocks: Sequence[nn.Module], x: torch.Tensor, valid: torch.Tensor | None
    ) -> torch.Tensor:
        """Apply ``blocks`` in turn, recomputing activations in backward if configured."""
        recompute = self._recompute()
        for block in blocks:
            x = checkpoint(block, x, valid, use_reentrant=False) if recompute else block(x, valid)
        return x

    def _recompute(self) -> bool:
        """Whether blocks recompute their activations in backward (gradient checkpointing)."""
        return self.config.gradient_checkpointing and self.training and torch.is_grad_enabled()

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
        """One pretraining step, as in MAE: mask, encode the kept genes, decode, score."""
        for block in self.decoder_blocks:  # one training step: FAVOR+ features redraw when due
            block.attn.kernel.maybe_redraw()
        cells = self.select_inputs(cells)
        masks = self.sample_masks(cells, generator)
        enc = self.forward_encoder(cells, masks)
        prediction = self.forward_decoder(enc, masks)
        return self.forward_loss(cells, enc, masks, prediction, generator)

    def sample_masks(
        self, cells: SparseCells, generator: torch.Generator | None = None
    ) -> MaskedEntries:
        """Draw the entries to hide: expressed genes (left out of the encoder) and zeros.

        Zeros are drawn among the candidate genes only (the gene panel, and with
        ``zero_mask_scope="observed"`` the genes the cell's study measured).
        """
        o = self.config.objective
        candidates = cells.observed if o.zero_mask_scope == "observed" else None
        if self.input_panel is not None:
            candidates = self.input_panel if candidates is None else candidates & self.input_panel
        nonzero_masked, zero_masked = draw_masks(
            cells.crow,
            TOKENS.N_GENES,
            p_nonzero=o.mask_ratio_nonzero,
            p_zero=o.mask_ratio_zero,
            positions=cells.pos,
            keep_at_least_one=not self.config.use_depth_tokens,
            candidates=candidates,
            generator=generator,
        )
        if o.max_encoder_genes is not None:
            nonzero_masked = cap_kept_entries(
                nonzero_masked, cells.crow, o.max_encoder_genes, generator=generator
            )
        zero_rows, zero_pos = zero_masked.nonzero(as_tuple=True)
        masked_rows = torch.cat([cells.row_ids()[nonzero_masked], zero_rows])
        masked_pos = torch.cat([cells.pos[nonzero_masked], zero_pos])
        order = sort_entries(masked_rows, masked_pos, TOKENS.N_POSITIONS)
        return MaskedEntries(nonzero_masked, masked_rows[order], masked_pos[order], candidates)

    def forward_encoder(self, cells: SparseCells, masks: MaskedEntries) -> EncoderOutput:
        """The encoder over each cell's expressed, unmasked genes (plus T and S)."""
        return self.encode(cells, keep=~masks.hidden)

    def forward_decoder(self, enc: EncoderOutput, masks: MaskedEntries) -> torch.Tensor:
        """Predicted values at the masked entries ``(n_masked,)``, in ``masks`` order.

        ``decoder_mode="full"`` decodes every vocabulary position (the reference); ``"masked"``
        decodes the encoder's tokens and the masked positions only.
        """
        if self.config.decoder_mode == "full":
            z = self._full_decoder_input(enc, masks.rows, masks.positions)
            return self._predict(self._run_decoder(z))[masks.rows, masks.positions]
        return self._decode_masked_only(enc, masks.rows, masks.positions)

    def forward_loss(
        self,
        cells: SparseCells,
        enc: EncoderOutput,
        masks: MaskedEntries,
        prediction: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> PretrainOutput:
        """MSE of the masked values, plus the configured cell-level objectives."""
        target = _lookup(cells.target or cells, masks.rows, masks.positions)
        masked_mse = nn.functional.mse_loss(prediction.float(), target, reduction="sum") / max(
            1, target.numel()
        )
        loss = self.add_cell_objectives(masked_mse, enc, cells, masks.candidates, generator)
        return PretrainOutput(
            loss, int(target.numel()), prediction.detach(), target, masks.rows, masks.positions,
            masked_mse=masked_mse.detach(),
        )  # fmt: skip

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
        # row-major order of the flags == (row, pos) sorted order of the masked entries
        if not len(self.decoder_blocks):
            return self._predict(self._run_decoder(z, valid))[flag]
        flag_rows, flag_slots = flag.nonzero(as_tuple=True)
        *blocks, last = self.decoder_blocks
        z = self._run_blocks(blocks, z, valid)
        # the last block only at the masked tokens: the other outputs would be discarded
        if self._recompute():
            z = checkpoint(last.forward_at, z, valid, flag_rows, flag_slots, use_reentrant=False)
        else:
            z = last.forward_at(z, valid, flag_rows, flag_slots)
        return self._predict(self.decoder_norm(z))


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
