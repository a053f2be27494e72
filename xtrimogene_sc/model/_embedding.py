"""What a trained :class:`~xtrimogene_sc.XTrimoGene` computes (a mixin of the model class).

Cell and gene embeddings and the reconstruction error, split from the model shell as
scvi-tools splits its models into mixins.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch

from xtrimogene_sc._arguments import require_bool
from xtrimogene_sc.data._iterate import iter_batches
from xtrimogene_sc.data._loading import observed_genes
from xtrimogene_sc.data._tokenize import DepthSpec, TargetDepthMode
from xtrimogene_sc.model import _gene_embeddings
from xtrimogene_sc.model._budget import token_budget
from xtrimogene_sc.model._precision import Precision, inference_precision
from xtrimogene_sc.module._compile import compiled_blocks

if TYPE_CHECKING:
    from anndata import AnnData

    from xtrimogene_sc.module._pooling import Pooling

InputType = Literal["counts", "bulk"]


class EmbeddingMixin:
    """Inference methods of :class:`~xtrimogene_sc.XTrimoGene`."""

    module: Any
    config: Any
    vocab: Any
    adata: Any
    device: torch.device
    _counts: Any

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
        compile: bool = False,
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
        compile
            Compile the value embedding and the encoder blocks with :func:`torch.compile` for
            this call (as ``train(compile=True)``: falls back to eager where no compiler works;
            off by default, meant for large inputs on GPUs).

        Returns
        -------
        ``(n_obs, d)`` float32 array in the order of ``adata.obs``.
        """
        require_bool("compile", compile)
        depth = _depth_for_input(input_type, t_mode, t_value)
        pooling = self._pooling_or_default(pooling)
        counts = self._counts(
            adata, layer, gene_symbols_key, require_integer=input_type == "counts"
        )
        self.module.eval()
        out: np.ndarray | None = None
        with compiled_blocks(self.module, enabled=compile, decoder=False):
            for rows, cells in counts.batches(
                batch_size=batch_size, depth=depth, progress=progress,
                max_tokens=self._inference_tokens(max_tokens), extra_tokens=self._extra_tokens,
            ):  # fmt: skip
                with self._precision(precision):
                    emb = self.module.embed_cells(cells.to(self.device), pooling=pooling)
                if out is None:
                    out = np.empty((counts.X.shape[0], emb.shape[1]), dtype=np.float32)
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
