"""User-facing xTrimoGene model: AnnData in, numpy / AnnData fields out (scvi-tools style)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import pandas as pd
import torch
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass
from scvi.train import TrainRunner

from xtrimogene_sc._constants import DEFAULT_KEYS, REGISTRY_KEYS, TOKENS
from xtrimogene_sc.base._saved import load_state_checked
from xtrimogene_sc.data._checks import CountCheck, check_counts, layer_matrix
from xtrimogene_sc.data._datamodule import CellDataModule
from xtrimogene_sc.data._iterate import iter_batches
from xtrimogene_sc.data._labels import check_obs_key
from xtrimogene_sc.data._loading import observed_genes
from xtrimogene_sc.data._tokenize import DepthSpec, TargetDepthMode
from xtrimogene_sc.data._vocab import GeneAlignment, GeneVocab
from xtrimogene_sc.model import _gene_embeddings
from xtrimogene_sc.model._budget import token_budget
from xtrimogene_sc.model._io import load_directory, save_directory
from xtrimogene_sc.model._precision import Precision, inference_precision
from xtrimogene_sc.model._query import FreezePolicy, QueryMappingMixin
from xtrimogene_sc.model._scfoundation import load_scfoundation
from xtrimogene_sc.module._config import XTrimoGeneConfig
from xtrimogene_sc.module._module import XTrimoGeneModule
from xtrimogene_sc.module._pooling import Pooling, check_pooling
from xtrimogene_sc.train._guard import check_train_args, check_training_cells, guarded_fit
from xtrimogene_sc.train._plan import XTrimoGeneTrainingPlan

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

_NO_ADATA_REGISTRY = {"field_registries": {}, "setup_args": {}}


class XTrimoGene(QueryMappingMixin, BaseModelClass):
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
        alignment = GeneVocab.default().align(
            adata, gene_symbols_key=gene_symbols_key, min_overlap=min_gene_overlap
        )
        X = layer_matrix(adata, layer)
        check_counts(X, alignment=alignment, layer=layer)
        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
        ]
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)
        adata.uns.setdefault(DEFAULT_KEYS.UNS, {})["alignment"] = alignment.to_dict()
        logger.info("xtrimogene_sc: %s", alignment.summary())

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
        X, var_to_position, check = self._counts_to_stream(
            adata, layer, gene_symbols_key, require_integer=require_integer
        )
        check.check_all(X)
        return X, var_to_position

    def _counts_to_stream(
        self,
        adata: AnnData | None,
        layer: str | None,
        gene_symbols_key: str | None,
        *,
        require_integer: bool = True,
    ) -> tuple[Any, np.ndarray, CountCheck]:
        """Counts of ``adata`` (default: the registered one), column map and checks to stream.

        Nothing is read yet: the returned :class:`~xtrimogene_sc.data._checks.CountCheck` checks
        each chunk as the batches read it, so an embedding reads the data once.
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
        X = layer_matrix(adata, layer)
        check = CountCheck(
            X, alignment=alignment, layer=layer, require_integer=require_integer,
            panel=self.config.input_positions,
        )  # fmt: skip
        return X, alignment.var_to_position, check

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
            gradient_clip_val=gradient_clip_val, num_workers=num_workers,
        )  # fmt: skip
        if max_tokens == "auto":
            device = "cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu"
            max_tokens = token_budget(self.config, device, training=True)
        data = CellDataModule(
            X, var_to_position, batch_size=batch_size, train_size=train_size,
            num_workers=num_workers, max_tokens=max_tokens,
            max_genes=self.config.max_encoder_genes, extra_tokens=self._extra_tokens,
        )  # fmt: skip
        check_training_cells(data.n_train, n_obs, train_size)
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
        with guarded_fit(self, runner.trainer):  # Ctrl-C -> KeyboardInterrupt; 0 steps: untrained
            runner()

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        *,
        pooling: Pooling | None = None,
        batch_size: int = 64,
        max_tokens: int | Literal["auto"] | None = "auto",
        layer: str | None = None,
        gene_symbols_key: str | None = None,
        t_mode: TargetDepthMode = "fold",
        t_value: float = 1.0,
        input_type: InputType = "counts",
        precision: Precision | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """Cell embeddings from the encoder.

        Parameters
        ----------
        adata
            Any AnnData of raw counts (in memory or ``backed="r"``); default: the registered one.
        pooling
            ``"concat"`` (reference ``pool_type='all'``: ``[S, T, max, mean]``), ``"max"`` or
            ``"mean"`` over the expressed-gene tokens, ``"depth_tokens"`` (``[S, T]``) or
            ``"max_all_tokens"`` (reference ``pool_type='max'``: a maximum over every encoder
            token, T and S included, so read depth enters it). ``None`` (default): the model's
            :attr:`default_pooling`.
        batch_size
            Largest number of cells per forward pass. Results do not depend on it.
        max_tokens
            Largest number of padded tokens per forward pass (long cells go in smaller
            batches); ``"auto"`` derives it from the device's memory. Results do not depend on it.
        layer, gene_symbols_key
            Where counts and symbols are, for an AnnData that was not set up.
        t_mode, t_value
            Target depth T: ``"fold"`` (T = log10(N * t_value); default T = S), ``"absolute"``
            (T = t_value, e.g. 4 for 10,000 counts) or ``"add_log10"`` (T = S + t_value).
        input_type
            ``"counts"`` (single cells, raw integer counts) or ``"bulk"``: bulk profiles in any
            non-negative unit (counts, TPM, FPKM) embedded with the scFoundation bulk recipe,
            values ``ln(1 + 1e4 x / N)`` and T = S = log10 N, with N the total over vocabulary
            genes. ``"bulk"`` fixes T, so ``t_mode``/``t_value`` must keep their defaults.
        precision
            ``"bf16"`` (default on GPUs that support it), ``"32"`` (float32; TF32 matrix products
            on GPUs that have them; the default on CPU) or ``"32-strict"`` (no TF32).
        progress
            Show a progress bar.

        Returns
        -------
        ``(n_obs, d)`` float32 array in the order of ``adata.obs``.
        """
        depth = _depth_for_input(input_type, t_mode, t_value)
        pooling = self._pooling_or_default(pooling)
        X, var_to_position, check = self._counts_to_stream(
            adata, layer, gene_symbols_key, require_integer=input_type == "counts"
        )
        self.module.eval()
        out: np.ndarray | None = None
        for rows, cells in iter_batches(
            X, var_to_position, batch_size=batch_size, depth=depth, progress=progress,
            max_tokens=self._inference_tokens(max_tokens), extra_tokens=self._extra_tokens,
            check=check,
        ):  # fmt: skip
            with self._precision(precision):
                emb = self.module.embed_cells(cells.to(self.device), pooling=pooling)
            if out is None:
                out = np.empty((X.shape[0], emb.shape[1]), dtype=np.float32)
            out[rows] = emb.float().cpu().numpy()
        return out if out is not None else np.empty((0, 0), dtype=np.float32)

    def get_gene_embeddings(
        self,
        adata: AnnData | None = None,
        *,
        genes: list[str] | None = None,
        reduce: str | None = "mean",
        out_file: str | Path | None = None,
        batch_size: int = 8,
        layer: str | None = None,
        gene_symbols_key: str | None = None,
        t_mode: TargetDepthMode = "fold",
        t_value: float = 1.0,
        input_type: InputType = "counts",
        precision: Precision | None = None,
        progress: bool = True,
    ) -> pd.DataFrame | np.ndarray | Path:
        """Decoder context embeddings of genes, streamed cell batch by cell batch.

        Parameters
        ----------
        adata
            Cells to run (default: the registered AnnData).
        genes
            Vocabulary symbols to return (default: every vocabulary gene).
        reduce
            ``"mean"`` averages over cells and returns a DataFrame (genes x d). ``None`` keeps
            one embedding per cell and gene: written to ``out_file`` (HDF5 dataset
            ``gene_embeddings``, cells x genes x d) if given, else returned as an array when it
            stays under 2 GB.
        out_file
            HDF5 path for per-cell output; only one batch is ever held in memory.
        batch_size
            Cells per decoder pass (the decoder holds batch x 19,266 x d activations).
        layer, gene_symbols_key
            Where counts and symbols are, for an AnnData that was not set up.
        t_mode, t_value, input_type, precision
            As in :meth:`get_latent_representation`.
        progress
            Show a progress bar.

        Notes
        -----
        The embeddings are the decoder output after its LayerNorm and the model's final
        LayerNorm, as the reference ``--output_type gene`` (its ``to_final`` removed).
        """
        depth = _depth_for_input(input_type, t_mode, t_value)
        X, var_to_position = self._resolve(
            adata, layer, gene_symbols_key, require_integer=input_type == "counts"
        )
        positions, names = _gene_embeddings.select_positions(self.vocab, genes)
        batches = iter_batches(
            X, var_to_position, batch_size=batch_size, depth=depth, progress=progress,
            desc="gene embeddings",
        )  # fmt: skip
        return _gene_embeddings.run(
            self.module, batches, positions, names, device=self.device, n_obs=X.shape[0],
            reduce=reduce, out_file=out_file,
            obs_names=None if adata is None and self.adata is None else
            list((adata if adata is not None else self.adata).obs_names), precision=precision,
        )  # fmt: skip

    @torch.inference_mode()
    def get_reconstruction_error(
        self,
        adata: AnnData | None = None,
        *,
        batch_size: int = 32,
        seed: int = 0,
        layer: str | None = None,
        gene_symbols_key: str | None = None,
    ) -> float:
        """Masked-value MSE with fixed masks (comparable before and after training)."""
        X, var_to_position = self._resolve(adata, layer, gene_symbols_key)
        observed = observed_genes(var_to_position)
        self.module.eval()
        total, count = 0.0, 0
        for i, (_, cells) in enumerate(
            iter_batches(X, var_to_position, batch_size=batch_size, progress=False)
        ):
            generator = torch.Generator(device=self.device).manual_seed(seed * 100_003 + i)
            cells = cells.with_observed(observed)  # the masks training draws
            out = self.module(cells.to(self.device), generator=generator)
            total += float(out.masked_mse) * out.n_masked  # without the cell-level terms
            count += out.n_masked
        return total / max(1, count)

    @property
    def _extra_tokens(self) -> int:
        return 2 if self.config.use_depth_tokens else 0

    def _inference_tokens(self, max_tokens: int | Literal["auto"] | None) -> int | None:
        if max_tokens == "auto":
            return token_budget(self.config, self.device, training=False)
        return max_tokens

    def _precision(self, precision: Precision | None = None):
        """Context manager running inference at ``precision`` on this model's device."""
        return inference_precision(self.device, precision)

    # ------------------------------------------------------------------ persistence
    def save(
        self,
        dir_path: str | Path,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        **kwargs: Any,
    ) -> None:
        """Save config, weights (safetensors) and vocabulary atomically to ``dir_path``."""
        extra = {
            "setup_args": dict(self.registry_.get("setup_args", {})),
            "is_trained": bool(self.is_trained_),
            "n_positions": TOKENS.N_POSITIONS,
            "source": self.source_,
            "default_pooling": self.default_pooling,
        }
        files = {}
        if save_anndata and self.adata is not None:
            files["adata.h5ad"] = lambda path: self.adata.write_h5ad(path)
        save_directory(
            dir_path, config=self.config, state_dict=self.module.state_dict(), vocab=self.vocab,
            extra=extra, overwrite=overwrite, extra_files=files,
        )  # fmt: skip

    @classmethod
    def load(
        cls,
        dir_path: str | Path,
        adata: AnnData | None = None,
        accelerator: str = "cpu",
        device: int | str = "auto",
        *,
        key: str = "cell",
        allow_pickle: bool = False,
    ) -> XTrimoGene:
        """Load a model saved by :meth:`save`, or a released scFoundation ``.ckpt`` file.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save` or by the pretraining export (no pickle is read),
            or a checkpoint file in the released scFoundation layout, which is passed to
            :meth:`from_scfoundation` with ``key`` and ``allow_pickle``. A directory of
            another kind (a classifier, a perturbation model) is refused with the loader to use.
        adata
            Optional AnnData to attach; it is set up with the saved arguments if needed.
        accelerator, device
            Where to put the weights: ``"cpu"`` or ``"gpu"``/``"cuda"`` and a device index.
        key, allow_pickle
            For a scFoundation checkpoint file, see :meth:`from_scfoundation`.
        """
        if Path(dir_path).is_file():
            return cls.from_scfoundation(
                dir_path, key, adata, allow_pickle=allow_pickle, accelerator=accelerator,
                device=device,
            )  # fmt: skip
        config, state_dict, _, meta = load_directory(dir_path)
        model = cls._with_weights(adata, config, state_dict, meta.get("setup_args", {}))
        model.is_trained_ = bool(meta.get("is_trained", True))
        model.source_ = meta.get("source")
        model.default_pooling = meta.get("default_pooling", "concat")  # saves before it: concat
        return model._placed(accelerator, device)

    from_pretrained = load

    @classmethod
    def from_scfoundation(
        cls,
        path: str | Path,
        key: str = "cell",
        adata: AnnData | None = None,
        *,
        allow_pickle: bool = False,
        accelerator: str = "cpu",
        device: int | str = "auto",
    ) -> XTrimoGene:
        """Load released scFoundation weights (``models.ckpt``) into an :class:`XTrimoGene`.

        Parameters
        ----------
        path
            The checkpoint file, in the released layout ``{'gene'|'cell'|'rde': {'config',
            'state_dict'}}``. It is memory-mapped, so a 1.3 GB file is not read into memory
            twice.
        key
            Which weights: ``"cell"`` for cell embeddings (the reference ``--version ce``),
            ``"gene"`` for gene embeddings and expression, ``"rde"`` for read-depth enhancement.
        adata
            Optional AnnData of raw counts to attach (set up with default arguments if needed).
        allow_pickle
            Only ``weights_only`` loading is used by default and a file that needs full pickle is
            refused. ``True`` unpickles it: **unsafe for files you do not trust**, since a pickle
            can run arbitrary code.
        accelerator, device
            Where to put the weights: ``"cpu"`` or ``"gpu"``/``"cuda"`` and a device index.

        Returns
        -------
        A model in eval mode with ``decoder_mode="full"``; :meth:`save` writes it in this
        package's safetensors format.

        Examples
        --------
        >>> model = xtg.XTrimoGene.from_scfoundation("models.ckpt", key="cell")  # doctest: +SKIP
        >>> xtg.tl.embed(adata, model, key_added="X_scfoundation")  # doctest: +SKIP
        """
        config, state_dict = load_scfoundation(path, key, allow_pickle=allow_pickle)
        model = cls._with_weights(adata, config, state_dict, {})
        model.is_trained_ = True
        model.source_ = {"scfoundation_checkpoint": str(path), "key": key}
        return model._placed(accelerator, device)

    @classmethod
    def _with_weights(
        cls,
        adata: AnnData | None,
        config: XTrimoGeneConfig,
        state_dict: dict[str, torch.Tensor],
        setup_args: dict[str, Any],
    ) -> XTrimoGene:
        """A model of ``config`` holding ``state_dict``, with ``adata`` set up if it is not yet."""
        if adata is not None and not adata.uns.get("_scvi_uuid"):
            cls.setup_anndata(
                adata, **{k: v for k, v in setup_args.items() if k in _SETUP_ARG_NAMES}
            )
        model = cls(adata, config=config)
        load_state_checked(model.module, state_dict)
        model.module.eval()
        return model

    def _placed(self, accelerator: str, device: int | str) -> XTrimoGene:
        if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
            index = 0 if device == "auto" else int(device)
            self.to_device(f"cuda:{index}")
        return self


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


InputType = Literal["counts", "bulk"]


def _depth_for_input(input_type: str, t_mode: str, t_value: float) -> DepthSpec:
    """Target-depth rule for an input type; bulk profiles use T = S (scFoundation recipe)."""
    if input_type not in ("counts", "bulk"):
        msg = f"input_type must be 'counts' or 'bulk', got {input_type!r}"
        raise ValueError(msg)
    if input_type == "bulk" and (t_mode, t_value) != ("fold", 1.0):
        msg = (
            "input_type='bulk' embeds with T = S = log10 of the total (the scFoundation bulk "
            f"recipe); leave t_mode/t_value at their defaults (got {t_mode!r}, {t_value})"
        )
        raise ValueError(msg)
    return DepthSpec(t_mode, t_value)


_SETUP_ARG_NAMES = ("layer", "batch_key", "labels_key", "gene_symbols_key", "min_gene_overlap")
