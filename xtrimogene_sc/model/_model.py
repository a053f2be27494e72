"""User-facing xTrimoGene model: AnnData in, numpy / AnnData fields out (scvi-tools style)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from xtrimogene_sc._constants import DEFAULT_KEYS, REGISTRY_KEYS
from xtrimogene_sc.data._alignment import GeneAlignment
from xtrimogene_sc.data._counts import Counts, read_counts
from xtrimogene_sc.data._datamodule import CellDataModule
from xtrimogene_sc.data._labels import check_obs_key
from xtrimogene_sc.data._vocab import GeneVocab
from xtrimogene_sc.model._batches import batches_of, training_batch_codes
from xtrimogene_sc.model._budget import token_budget
from xtrimogene_sc.model._embedding import EmbeddingMixin
from xtrimogene_sc.model._persistence import SaveLoadMixin
from xtrimogene_sc.model._query import FreezePolicy, QueryMappingMixin
from xtrimogene_sc.module._compile import compiled_blocks
from xtrimogene_sc.module._config import XTrimoGeneConfig
from xtrimogene_sc.module._module import XTrimoGeneModule
from xtrimogene_sc.module._pooling import Pooling, check_pooling
from xtrimogene_sc.train._guard import (
    check_train_args,
    check_training_cells,
    guarded_fit,
    warn_slow_cpu_run,
)
from xtrimogene_sc.train._plan import XTrimoGeneTrainingPlan

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

_NO_ADATA_REGISTRY = {"field_registries": {}, "setup_args": {}}


class XTrimoGene(EmbeddingMixin, SaveLoadMixin, QueryMappingMixin, BaseModelClass):
    """xTrimoGene / scFoundation asymmetric masked autoencoder for scRNA-seq counts.

    The encoder (exact attention) sees only a cell's expressed genes plus two read-depth tokens;
    the Performer decoder sees every position of the 19,264-gene vocabulary and regresses the
    masked values. Parameters live on vocabulary positions, so a trained model embeds any AnnData
    whose genes map to the vocabulary, whatever its columns.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`; may be ``None`` for a model that only
        embeds (e.g. loaded from disk).
    preset
        Size preset: ``"tiny"``, ``"small"``, ``"base"``, ``"large"`` or ``"100m"`` (reference).
    config
        A full :class:`~xtrimogene_sc.XTrimoGeneConfig`; overrides ``preset``.
    input_genes
        The gene panel the model reads: names from ``adata.var_names`` (e.g. the highly variable
        genes, :func:`xtrimogene_sc.pp.highly_variable_genes`), stored in the config as
        vocabulary positions so that any later AnnData is read through the same panel. ``None``
        reads every gene. Needs ``adata``.
    **config_overrides
        Any config field, e.g. ``decoder_mode="masked"``.

    Examples
    --------
    >>> import xtrimogene_sc as xtg
    >>> adata = xtg.datasets.pbmc68k_counts()
    >>> xtg.XTrimoGene.setup_anndata(adata)
    >>> model = xtg.XTrimoGene(adata, preset="tiny")
    >>> model.train(max_epochs=2)  # doctest: +SKIP
    >>> adata.obsm["X_xtg"] = model.get_latent_representation()  # doctest: +SKIP
    """

    def __init__(
        self,
        adata: AnnData | None = None,
        *,
        preset: str = "tiny",
        config: XTrimoGeneConfig | None = None,
        input_genes: Sequence[str] | None = None,
        **config_overrides: Any,
    ) -> None:
        if adata is None:
            super().__init__(registry=dict(_NO_ADATA_REGISTRY))
        else:
            super().__init__(adata)
        self.config = config or XTrimoGeneConfig.preset(preset, **config_overrides)
        self.vocab = GeneVocab.default()
        self.alignment_: GeneAlignment | None = None
        self.source_: dict[str, str] | None = None  # where loaded weights came from
        self._default_pooling: Pooling = "concat"
        if adata is not None:
            self.alignment_ = self._align(adata, self._setup_arg("gene_symbols_key"))
        if input_genes is not None:
            if self.alignment_ is None:
                msg = "input_genes names columns of adata: pass the AnnData too"
                raise ValueError(msg)
            positions = self.alignment_.positions_of(adata.var_names, input_genes)
            self.config = replace(self.config, input_positions=positions)
        if (
            self.config.objective.batch_readout
            and adata is not None
            and not self.config.objective.n_batches
        ):
            self.config = self.config.replace(n_batches=batches_of(self))
        self.module = XTrimoGeneModule(self.config)
        n_params = sum(p.numel() for p in self.module.parameters())
        panel = self.config.input_positions
        self._model_summary_string = (
            f"XTrimoGene: encoder {self.config.encoder_depth}x{self.config.encoder_dim}, "
            f"decoder {self.config.decoder_depth}x{self.config.decoder_dim} (FAVOR+, "
            f"{self.config.decoder_mode}), {n_params / 1e6:.2f}M parameters"
            + ("" if panel is None else f", reads a panel of {len(panel):,} genes")
        )
        self.init_params_ = {"config": self.config.to_dict()}

    @property
    def default_pooling(self) -> Pooling:
        """Pooling used when :meth:`get_latent_representation` gets none (saved with the model).

        ``"concat"``, the released scFoundation recipe, unless set: a model trained by a
        :class:`~xtrimogene_sc.model.TrainingRecipe` gets the recipe's (``"mean"`` for
        :data:`~xtrimogene_sc.model.SMALL_DATA_RECIPE`), so that :func:`xtrimogene_sc.tl.embed`,
        label transfer and ``xtrimogene-sc embed`` use the pooling it was measured with.
        """
        return self._default_pooling

    @default_pooling.setter
    def default_pooling(self, pooling: Pooling) -> None:
        if pooling not in get_args(Pooling):
            msg = f"default_pooling must be one of {list(get_args(Pooling))}, got {pooling!r}"
            raise ValueError(msg)
        self._default_pooling = pooling

    def _pooling_or_default(self, pooling: Pooling | None) -> Pooling:
        """``pooling``, or :attr:`default_pooling` when it is ``None``; checked before any work."""
        chosen = self.default_pooling if pooling is None else pooling
        check_pooling(chosen, self.config)
        return chosen

    # ------------------------------------------------------------------ data registration
    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        batch_key: str | None = None,
        labels_key: str | None = None,
        gene_symbols_key: str | None = None,
        min_gene_overlap: float = 0.25,
        **kwargs: Any,
    ) -> None:
        """Register an AnnData of raw counts and check it against the gene vocabulary.

        Parameters
        ----------
        adata
            Cells x genes with raw integer counts in ``layer`` (or ``X``).
        layer
            Layer holding raw counts; ``None`` uses ``adata.X``.
        batch_key, labels_key
            Optional ``obs`` columns registered for downstream use (mapping, annotation).
        gene_symbols_key
            ``var`` column of HGNC symbols, needed when ``var_names`` are Ensembl IDs.
        min_gene_overlap
            Refuse data where fewer than this fraction of its genes are in the vocabulary.

        Raises
        ------
        ValueError
            Non-count values (negative, NaN, non-integer), empty cells, Ensembl IDs without
            ``gene_symbols_key``, or too little overlap with the vocabulary. Each message says
            what to pass instead.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_obs_key(adata, labels_key, "labels_key")
        check_obs_key(adata, batch_key, "batch_key")
        counts = read_counts(
            adata, layer=layer, gene_symbols_key=gene_symbols_key, min_overlap=min_gene_overlap
        )
        counts.checked()
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
        ]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)
        adata.uns.setdefault(DEFAULT_KEYS.UNS, {})["alignment"] = counts.record()
        logger.info("xtrimogene_sc: %s", counts.alignment.summary(counts.count_share()))

    @classmethod
    def _registered_setup_args(cls, adata: AnnData) -> dict[str, Any]:
        """Arguments of ``setup_anndata`` for ``adata`` (or the AnnData it was copied from)."""
        manager = cls._setup_adata_manager_store.get(adata.uns.get("_scvi_uuid"))
        return dict(manager.registry["setup_args"]) if manager is not None else {}

    def _setup_arg(self, name: str, default: Any = None) -> Any:
        return self.registry_.get("setup_args", {}).get(name, default)

    def _align(self, adata: AnnData, gene_symbols_key: str | None) -> GeneAlignment:
        return self.vocab.align(
            adata,
            gene_symbols_key=gene_symbols_key,
            min_overlap=self._setup_arg("min_gene_overlap", 0.25),
        )

    def _resolve(
        self,
        adata: AnnData | None,
        layer: str | None,
        gene_symbols_key: str | None,
        *,
        require_integer: bool = True,
    ) -> tuple[Any, np.ndarray]:
        """Count matrix and column -> vocabulary map of ``adata``, its counts checked."""
        counts = self._counts(adata, layer, gene_symbols_key, require_integer=require_integer)
        counts.checked()
        return counts.X, counts.var_to_position

    def _counts(
        self,
        adata: AnnData | None,
        layer: str | None,
        gene_symbols_key: str | None,
        *,
        require_integer: bool = True,
    ) -> Counts:
        """The counts of ``adata`` (default: the registered one), not read yet.

        :meth:`Counts.batches <xtrimogene_sc.data.Counts.batches>` checks each chunk as it reads
        it, so an embedding reads the data once.
        """
        if adata is None:
            if self.adata is None:
                msg = "this model has no registered AnnData; pass adata="
                raise ValueError(msg)
            adata, layer = self.adata, self._setup_arg("layer")
            gene_symbols_key = self._setup_arg("gene_symbols_key")
            alignment = self.alignment_ or self._align(adata, gene_symbols_key)
        else:  # arguments not given fall back to those registered with setup_anndata(adata)
            registered = self._registered_setup_args(adata)
            layer = layer if layer is not None else registered.get("layer")
            if gene_symbols_key is None:
                gene_symbols_key = registered.get("gene_symbols_key")
            alignment = self._align(adata, gene_symbols_key)
        return read_counts(
            adata, layer=layer, alignment=alignment, panel=self.config.input_positions,
            require_integer=require_integer,
        )  # fmt: skip

    @property
    def device(self) -> torch.device:
        """Device of the module's parameters."""
        return next(self.module.parameters()).device

    # ------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int | None = None,
        *,
        batch_size: int = 32,
        max_tokens: int | Literal["auto"] | None = "auto",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_fraction: float = 0.1,
        train_size: float = 0.9,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        precision: str | None = None,
        gradient_clip_val: float = 1.0,
        num_workers: int = 0,
        compile: bool = False,
        plan_kwargs: dict[str, Any] | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        """Pretrain by masked-value regression through scvi-tools' trainer.

        Parameters
        ----------
        max_epochs
            Passes over the training cells, a positive integer; default (``None``) scales with
            data size (about 20,000 cells seen, at most 50 passes).
        batch_size
            Largest number of cells in a minibatch.
        max_tokens
            Largest number of padded encoder tokens in a minibatch (cells x longest cell), which
            is what activation memory grows with: long cells come in smaller batches. ``"auto"``
            derives it from the device's memory (:func:`~xtrimogene_sc.model.token_budget`);
            ``None`` batches by cells only.
        lr, weight_decay
            AdamW peak learning rate and weight decay.
        warmup_fraction
            Share of the optimiser steps spent in linear warm-up before the cosine decay.
        train_size
            Fraction of cells for training; the rest gives ``validation_loss`` every epoch.
        accelerator, devices
            Lightning accelerator and devices.
        precision
            Lightning precision; default ``"bf16-mixed"`` on GPUs that support it, else fp32.
        gradient_clip_val
            Gradient-norm clipping (the reference clips at 1.0).
        num_workers
            DataLoader workers (tokenization runs there).
        compile
            Compile the value embedding and the encoder and decoder blocks with
            :func:`torch.compile` for this run (dynamic shapes; falls back to eager, with a
            warning, where no compiler works). Off by default: on a CPU it did not make the
            recipe's step faster and its first steps compile for about a minute; meant for GPUs.
        plan_kwargs
            Extra :class:`~xtrimogene_sc.train.XTrimoGeneTrainingPlan` arguments.
        **trainer_kwargs
            Passed to the Lightning trainer (e.g. ``enable_checkpointing``, ``callbacks``).

        Raises
        ------
        ValueError
            An argument out of range (e.g. ``max_epochs=0``), or a split without training cells;
            raised before anything changes.
        KeyboardInterrupt
            On Ctrl-C: the first one stops after the current step, a second one at once. The
            model keeps the weights trained so far and ``is_trained`` stays unchanged if no
            step ran; the Ctrl-C handler is restored.
        """
        if self.adata is None:
            msg = "train() needs a model built on an AnnData registered with setup_anndata"
            raise ValueError(msg)
        if not any(p.requires_grad for p in self.module.parameters()):
            msg = (
                "every weight is frozen (load_query_data(freeze='all')): nothing to train; embed "
                "the query directly, or map it with freeze='layer_norm' to adapt the LayerNorms"
            )
            raise ValueError(msg)
        X, var_to_position = self._resolve(None, None, None)
        n_obs = X.shape[0]
        max_epochs = check_train_args(
            max_epochs, n_obs=n_obs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            warmup_fraction=warmup_fraction, train_size=train_size,
            gradient_clip_val=gradient_clip_val, num_workers=num_workers, compile=compile,
        )  # fmt: skip
        batch_codes = training_batch_codes(self)
        device = "cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu"
        if max_tokens == "auto":
            max_tokens = token_budget(self.config, device, training=True)
        data = CellDataModule(
            X, var_to_position, batch_size=batch_size, train_size=train_size,
            num_workers=num_workers, max_tokens=max_tokens,
            max_genes=self.config.objective.max_encoder_genes, extra_tokens=self._extra_tokens,
            batch_codes=batch_codes,
        )  # fmt: skip
        check_training_cells(data.n_train, n_obs, train_size)
        warn_slow_cpu_run(self.config.decoder_mode, device, data.n_train * max_epochs)
        total_steps = max(1, data.n_train_batches * max_epochs)
        plan = XTrimoGeneTrainingPlan(
            self.module,
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=int(warmup_fraction * total_steps),
            total_steps=total_steps,
            **(plan_kwargs or {}),
        )
        if precision is None:
            use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            precision = "bf16-mixed" if use_bf16 and accelerator != "cpu" else "32-true"
        trainer_kwargs.setdefault("check_val_every_n_epoch", 1 if data.n_val else None)
        self.module.train()
        runner = TrainRunner(
            self,
            training_plan=plan,
            data_splitter=data,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            precision=precision,
            gradient_clip_val=gradient_clip_val,
            use_distributed_sampler=False,
            **trainer_kwargs,
        )
        with guarded_fit(self, runner.trainer), compiled_blocks(self.module, enabled=compile):
            runner()  # Ctrl-C -> KeyboardInterrupt; 0 steps: untrained


def load_query_data(
    adata: AnnData,
    reference_model: XTrimoGene | str | Path,
    *,
    freeze: FreezePolicy = "all",
    **kwargs: Any,
) -> XTrimoGene:
    """Function form of :meth:`QueryMappingMixin.load_query_data` for :class:`XTrimoGene`."""
    return QueryMappingMixin.load_query_data.__func__(
        XTrimoGene, adata, reference_model, freeze=freeze, **kwargs
    )
