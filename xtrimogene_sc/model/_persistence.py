"""Saving and loading an :class:`~xtrimogene_sc.XTrimoGene` (a mixin of the model class).

Its own directories are atomic and checksummed; released scFoundation checkpoints load too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import torch

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.base._saved import load_state_checked
from xtrimogene_sc.model._io import load_directory, save_directory
from xtrimogene_sc.model._scfoundation import load_scfoundation

if TYPE_CHECKING:
    from anndata import AnnData

    from xtrimogene_sc.module._config import XTrimoGeneConfig

#: the setup_anndata arguments a saved model records and re-applies to an AnnData it is given
SETUP_ARG_NAMES = ("layer", "batch_key", "labels_key", "gene_symbols_key", "min_gene_overlap")


class SaveLoadMixin:
    """Persistence methods of :class:`~xtrimogene_sc.XTrimoGene`."""

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
    ) -> Self:
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
    ) -> Self:
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
    ) -> Self:
        """A model of ``config`` holding ``state_dict``, with ``adata`` set up if it is not yet."""
        if adata is not None and not adata.uns.get("_scvi_uuid"):
            cls.setup_anndata(
                adata, **{k: v for k, v in setup_args.items() if k in SETUP_ARG_NAMES}
            )
        model = cls(adata, config=config)
        load_state_checked(model.module, state_dict)
        model.module.eval()
        return model

    def _placed(self, accelerator: str, device: int | str) -> Self:
        if accelerator in ("gpu", "cuda") and torch.cuda.is_available():
            index = 0 if device == "auto" else int(device)
            self.to_device(f"cuda:{index}")
        return self
