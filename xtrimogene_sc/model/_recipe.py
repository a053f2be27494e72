"""A named training recipe: model size, masking and schedule chosen together, with a pooling."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anndata import AnnData

    from xtrimogene_sc.model._model import XTrimoGene


@dataclass(frozen=True)
class TrainingRecipe:
    """How to pretrain a model from scratch and embed with it.

    Attributes
    ----------
    preset
        Size preset (see :meth:`~xtrimogene_sc.XTrimoGeneConfig.preset`).
    encoder_depth
        Encoder layers, replacing the preset's (``None``, the default: the preset's; ``tiny``
        has 2). :data:`SMALL_DATA_RECIPE` uses one, which scores like two on small data sets
        at a lower cost a step.
    encoder_dim
        Encoder width, replacing the preset's (``None``, the default: the preset's; ``tiny``
        has 64).
    decoder_mode, mask_ratio_nonzero, zero_mask_scope, encoder_dropout, contrastive_weight,
    contrastive_view, cell_reconstruction_weight, cell_reconstruction_scaled,
    cell_reconstruction_query, batch_readout
        :class:`~xtrimogene_sc.XTrimoGeneConfig` fields. The recipe trains without encoder
        dropout, which costs a CPU step its dropout masks and did not help. ``batch_readout``
        only acts when the AnnData was set up with a ``batch_key`` of two or more batches.
    steps
        Optimiser steps to train for; the number of epochs follows from the data size (at
        least one). Small data sets need many passes, large ones few.
    min_epochs
        But at least this many passes over the cells: on a few thousand cells, ``steps`` alone
        would see each cell too rarely (``None``: no minimum). The time therefore grows with the
        number of cells; the recipe is meant for up to a few thousand. Larger data sets belong
        to :func:`~xtrimogene_sc.pretrain.pretrain`. How the recipe's choices were measured is
        in the small-data section of the documentation (:doc:`/model`).
    epochs
        If set, train for exactly this many epochs instead of ``steps``.
    batch_size, lr
        :meth:`~xtrimogene_sc.XTrimoGene.train` arguments.
    pooling
        Pooling for :meth:`~xtrimogene_sc.XTrimoGene.get_latent_representation`;
        :meth:`build` (and so :meth:`pretrain`) makes it the model's
        :attr:`~xtrimogene_sc.XTrimoGene.default_pooling`, saved with the model.
    n_top_genes
        Read only the data set's ``n_top_genes`` most variable genes
        (:func:`~xtrimogene_sc.pp.highly_variable_genes`; the model keeps them as its gene panel,
        ``input_genes``); ``None`` reads every gene. On few cells, thousands of weakly varying
        genes drown the cell-type signal in the pooled embedding and cost most of the compute.
    """

    preset: str = "tiny"
    encoder_depth: int | None = None
    encoder_dim: int | None = None
    decoder_mode: str = "masked"
    mask_ratio_nonzero: float = 0.5
    zero_mask_scope: str = "observed"
    encoder_dropout: float = 0.0
    contrastive_weight: float = 0.0
    contrastive_view: str = "sample"
    cell_reconstruction_weight: float = 10.0
    cell_reconstruction_scaled: bool = True
    cell_reconstruction_query: str = "mlp"
    batch_readout: bool = False
    steps: int = 2400
    min_epochs: int | None = 60
    epochs: int | None = None
    batch_size: int = 16
    lr: float = 1e-3
    pooling: str = "mean"
    n_top_genes: int | None = 2000

    def config_overrides(self) -> dict[str, Any]:
        """Config fields to pass to :class:`~xtrimogene_sc.XTrimoGene`."""
        size = {
            name: value
            for name, value in (
                ("encoder_depth", self.encoder_depth),
                ("encoder_dim", self.encoder_dim),
            )
            if value is not None
        }
        return {
            **size,
            "decoder_mode": self.decoder_mode,
            "mask_ratio_nonzero": self.mask_ratio_nonzero,
            "zero_mask_scope": self.zero_mask_scope,
            "encoder_dropout": self.encoder_dropout,
            "contrastive_weight": self.contrastive_weight,
            "contrastive_view": self.contrastive_view,
            "cell_reconstruction_weight": self.cell_reconstruction_weight,
            "cell_reconstruction_scaled": self.cell_reconstruction_scaled,
            "cell_reconstruction_query": self.cell_reconstruction_query,
            "batch_readout": self.batch_readout,
        }

    def train_kwargs(self, n_obs: int, train_size: float = 0.9) -> dict[str, Any]:
        """Arguments to pass to :meth:`~xtrimogene_sc.XTrimoGene.train` for ``n_obs`` cells."""
        return {
            "max_epochs": self.epochs_for(n_obs, train_size),
            "batch_size": self.batch_size,
            "lr": self.lr,
            "train_size": train_size,
        }

    def pretrain(
        self, adata: AnnData, *, max_epochs: int | None = None, **trainer_kwargs: Any
    ) -> XTrimoGene:
        """A new model of this recipe trained from scratch on ``adata`` (already set up).

        Parameters
        ----------
        adata
            AnnData registered with :meth:`~xtrimogene_sc.XTrimoGene.setup_anndata`.
        max_epochs
            Train for this many epochs instead of the recipe's ``steps`` (a bounded run).
        **trainer_kwargs
            Further :meth:`~xtrimogene_sc.XTrimoGene.train` arguments (e.g.
            ``enable_progress_bar=False``).
        """
        model = self.build(adata)
        kwargs = self.train_kwargs(adata.n_obs)
        if max_epochs is not None:
            kwargs["max_epochs"] = max_epochs
        model.train(**kwargs, **trainer_kwargs)
        return model

    def build(self, adata: AnnData) -> XTrimoGene:
        """The untrained model of this recipe for ``adata`` (already set up).

        It reads the recipe's gene panel, has its architecture and masking, and embeds with its
        pooling by default (:attr:`~xtrimogene_sc.XTrimoGene.default_pooling`).
        """
        from xtrimogene_sc.model._model import XTrimoGene

        model = XTrimoGene(
            adata,
            preset=self.preset,
            input_genes=self.input_genes(adata),
            **self.config_overrides(),
        )
        model.default_pooling = self.pooling
        return model

    def input_genes(self, adata: AnnData) -> list[str] | None:
        """The gene panel this recipe trains ``adata`` on (``None``: every gene)."""
        from xtrimogene_sc.model._model import XTrimoGene
        from xtrimogene_sc.pp._genes import highly_variable_genes

        if self.n_top_genes is None:
            return None
        setup = XTrimoGene._registered_setup_args(adata)
        genes = highly_variable_genes(
            adata, self.n_top_genes, layer=setup.get("layer"),
            gene_symbols_key=setup.get("gene_symbols_key"),
        )  # fmt: skip
        return genes if len(genes) >= self.n_top_genes else None  # fewer: no selection needed

    def epochs_for(self, n_obs: int, train_size: float = 0.9) -> int:
        """Epochs that give about ``steps`` optimiser steps on ``n_obs`` cells (``min_epochs`` at least)."""
        if self.epochs is not None:
            return self.epochs
        return max(
            1, round(self.steps / self.steps_per_epoch(n_obs, train_size)), self.min_epochs or 0
        )

    def steps_per_epoch(self, n_obs: int, train_size: float = 0.9) -> int:
        """Optimiser steps in one pass over the training share of ``n_obs`` cells."""
        return max(1, math.ceil(round(train_size * n_obs) / self.batch_size))


SMALL_DATA_RECIPE = TrainingRecipe(encoder_depth=1)
"""The recipe of ``xtrimogene-sc demo``: chosen by ``benchmarks/bench_small_data.py --sweep``."""
