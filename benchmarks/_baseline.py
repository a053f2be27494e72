"""A classical ("dense") transformer baseline for the asymmetric xTrimoGene benchmark.

The baseline is what the xTrimoGene paper compares against: a plain transformer in which every gene
position of a cell is a token, zeros included, so its cost does not depend on how sparse the data
are. It shares the building blocks of :class:`~xtrimogene_sc.module.XTrimoGeneModule` (the
auto-discretization value embedding, the post-LN exact-attention ``EncoderBlock``, the learned mask
embedding, an MSE head on masked values) so that a timing difference measures the architecture, not
the implementation of its parts.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.module import PretrainOutput, SparseCells, XTrimoGeneConfig
from xtrimogene_sc.module._module import _init_weights  # same initialisation as the model
from xtrimogene_sc.nn import AutoDiscretizationEmbedding, EncoderBlock, sample_masks


class DenseTransformerBaseline(nn.Module):
    """Classical transformer over all gene positions (plus the two depth tokens).

    Sizing choice: the baseline has ``config.encoder_depth + config.decoder_depth`` layers, all of
    them :class:`~xtrimogene_sc.nn.EncoderBlock` at ``config.encoder_dim`` width with
    ``config.encoder_heads`` heads and ``config.ff_mult``. It therefore has the *same depth* as the
    asymmetric model (encoder + decoder layers) and the *width of its encoder*; because the
    asymmetric decoder is narrower (``decoder_dim < encoder_dim`` in every preset) the baseline has
    somewhat *more* transformer parameters, never fewer, so it is not handicapped by capacity. Its
    position table has only ``n_genes (+2)`` rows instead of the 19,267 of the vocabulary model, so
    compare parameter counts without the position tables
    (:meth:`parameter_counts` reports both).

    Per minibatch, the sparse cells are densified to ``(B, n_genes [+2])`` (a classical model has no
    other choice); every position, zero or not, is embedded by the auto-discretization embedding
    plus a learned position embedding. Training masks with the module's probabilities (non-zero
    genes with ``config.objective.mask_ratio_nonzero``, zero genes with ``config.objective.mask_ratio_zero``, depth
    tokens never), replaces masked positions by a learned mask embedding and regresses the masked
    values with an MSE loss, exactly as the asymmetric model's pretraining objective.

    Parameters
    ----------
    config
        The asymmetric model's configuration; only the encoder width/heads, both depths,
        ``ff_mult``, ``encoder_dropout``, the binning and masking settings and ``use_depth_tokens``
        are used.
    n_genes
        Number of gene positions (tokens per cell, excluding the depth tokens); at most 19,264.
    gene_positions
        Vocabulary positions of the ``n_genes`` columns, in column order. Default
        ``arange(n_genes)``. Cells with a non-zero entry outside these positions are rejected.
    """

    def __init__(
        self,
        config: XTrimoGeneConfig,
        n_genes: int,
        gene_positions: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        if not 1 <= n_genes <= TOKENS.N_GENES:
            msg = f"n_genes={n_genes} must lie in [1, {TOKENS.N_GENES}]"
            raise ValueError(msg)
        if gene_positions is None:
            gene_positions = np.arange(n_genes)
        gene_positions = np.asarray(gene_positions, dtype=np.int64)
        if gene_positions.shape != (n_genes,) or len(np.unique(gene_positions)) != n_genes:
            msg = f"gene_positions must hold {n_genes} distinct vocabulary positions"
            raise ValueError(msg)
        if gene_positions.min() < 0 or gene_positions.max() >= TOKENS.N_GENES:
            msg = f"gene_positions must lie in [0, {TOKENS.N_GENES})"
            raise ValueError(msg)
        self.config = config
        self.n_genes = n_genes
        self.length = n_genes + (2 if config.use_depth_tokens else 0)
        local = torch.full((TOKENS.N_GENES,), -1, dtype=torch.long)
        local[torch.from_numpy(gene_positions)] = torch.arange(n_genes)
        self.register_buffer("local_index", local, persistent=False)
        self.register_buffer(
            "gene_positions", torch.from_numpy(gene_positions.copy()), persistent=False
        )

        c = config
        self.value_embedding = AutoDiscretizationEmbedding(
            c.encoder_dim, bin_num=c.bin_num, bin_alpha=c.bin_alpha
        )
        self.position_embedding = nn.Embedding(self.length, c.encoder_dim)
        self.blocks = nn.ModuleList(
            EncoderBlock(
                c.encoder_dim, c.encoder_heads, ff_mult=c.ff_mult, dropout=c.encoder_dropout
            )
            for _ in range(c.encoder_depth + c.decoder_depth)
        )
        self.norm = nn.LayerNorm(c.encoder_dim)
        self.head_norm = nn.LayerNorm(c.encoder_dim)
        self.head = nn.Linear(c.encoder_dim, 1)
        self.apply(_init_weights)

    # ------------------------------------------------------------------ helpers
    def parameter_counts(self) -> dict[str, int]:
        """Total parameters and parameters without the position-embedding table."""
        total = sum(p.numel() for p in self.parameters())
        return {
            "total": total,
            "without_position_table": total - self.position_embedding.weight.numel(),
        }

    def _local_positions(self, cells: SparseCells) -> torch.Tensor:
        local = self.local_index[cells.pos]
        if bool((local < 0).any()):
            msg = "cells have non-zero entries outside the baseline's gene_positions"
            raise ValueError(msg)
        return local

    def densify(self, cells: SparseCells, *, values: torch.Tensor | None = None) -> torch.Tensor:
        """Dense ``(B, length)`` rows: gene values, then T and S when depth tokens are used.

        Parameters
        ----------
        cells
            The minibatch.
        values
            Optional replacement for ``cells.value`` (same layout); used for targets.
        """
        dense = torch.zeros(
            cells.n_cells, self.length, dtype=torch.float32, device=cells.pos.device
        )
        dense[cells.row_ids(), self._local_positions(cells)] = (
            cells.value if values is None else values
        ).float()
        if self.config.use_depth_tokens:
            dense[:, self.n_genes] = cells.depth_t.float()
            dense[:, self.n_genes + 1] = cells.depth_s.float()
        return dense

    def _encode(self, dense: torch.Tensor, masked: torch.Tensor | None) -> torch.Tensor:
        x = self.value_embedding(dense)  # (B, L, D)
        if masked is not None:
            x = torch.where(masked[..., None], self.value_embedding.mask_embedding, x)
        x = x + self.position_embedding.weight
        for block in self.blocks:
            x = block(x)  # equal-length rows: no padding mask
        return self.norm(x)

    # ------------------------------------------------------------------ public API
    def forward(
        self, cells: SparseCells, generator: torch.Generator | None = None
    ) -> PretrainOutput:
        """Mask, run every position through the stack, and regress the masked values (MSE).

        Same call signature and output type as :meth:`XTrimoGeneModule.forward`.
        """
        c = self.config
        local = self._local_positions(cells)
        nonzero_masked, zero_masked = sample_masks(
            cells.crow,
            self.n_genes,
            p_nonzero=c.objective.mask_ratio_nonzero,
            p_zero=c.objective.mask_ratio_zero,
            positions=local,
            keep_at_least_one=not c.use_depth_tokens,
            generator=generator,
        )
        masked = torch.zeros(cells.n_cells, self.length, dtype=torch.bool, device=local.device)
        masked[:, : self.n_genes] = zero_masked
        masked[cells.row_ids()[nonzero_masked], local[nonzero_masked]] = True

        hidden = self._encode(self.densify(cells), masked)
        prediction = self.head(self.head_norm(hidden[masked])).squeeze(-1)
        target = self.densify(cells.target or cells)[masked]  # depth tokens are never masked
        loss = nn.functional.mse_loss(prediction.float(), target, reduction="sum") / max(
            1, target.numel()
        )
        masked_rows, masked_local = masked.nonzero(as_tuple=True)  # row-major == hidden[masked]
        return PretrainOutput(
            loss=loss,
            n_masked=int(target.numel()),
            prediction=prediction.detach(),
            target=target,
            rows=masked_rows,
            positions=self.gene_positions[masked_local],
            masked_mse=loss.detach(),
        )

    def embed(self, cells: SparseCells) -> torch.Tensor:
        """Cell embeddings ``(B, D)``: mean of the final hidden states over the gene positions."""
        hidden = self._encode(self.densify(cells), None)
        return hidden[:, : self.n_genes].mean(dim=1)
