"""Fine-tuned cell-type classifier: the last encoder layer(s) of a trained model plus an MLP head.

The recipe follows scFoundation's annotation fine-tuning (spec §5.3, §8.2.6): embeddings and all
encoder layers but the last ``n_trainable_layers`` stay frozen; the pooled encoder output goes
through ``BatchNorm (no affine) -> Linear -> ReLU -> Dropout -> Linear``; the loss is a
class-weighted cross-entropy with weights ``min(max_k A_k / A_i, 50)`` (normalised), ``A_i`` the
training cells of class ``i``; the epoch with the best validation macro-F1 is kept.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax

from xtrimogene_sc._arguments import require_fit_args, require_positive_int, require_real
from xtrimogene_sc.annotation._finetune import fit_classifier
from xtrimogene_sc.annotation._head import ClassifierModule
from xtrimogene_sc.base._saved import load_state_checked
from xtrimogene_sc.base._task import TaskModel
from xtrimogene_sc.data import GeneVocab
from xtrimogene_sc.data._counts import read_counts
from xtrimogene_sc.data._labels import usable_labels
from xtrimogene_sc.model._backbone import backbone_module
from xtrimogene_sc.model._io import load_directory, save_directory
from xtrimogene_sc.model._model import XTrimoGene
from xtrimogene_sc.module._freezing import check_trainable_layers
from xtrimogene_sc.module._module import XTrimoGeneModule
from xtrimogene_sc.module._pooling import Pooling, check_pooling
from xtrimogene_sc.train._calibration import calibration_split, fit_temperature

if TYPE_CHECKING:
    from anndata import AnnData


logger = logging.getLogger(__name__)

_KIND = "xtrimogene_classifier"


class XTrimoGeneClassifier(TaskModel):
    """Cell-type classifier fine-tuned from a trained :class:`~xtrimogene_sc.XTrimoGene`.

    Parameters
    ----------
    model
        A trained model, its torch module, or a directory saved by :meth:`XTrimoGene.save`. Its
        weights are copied; the model itself is left untouched.
    n_trainable_layers
        Encoder blocks fine-tuned, counted from the last (the final encoder LayerNorm trains with
        them); 0 trains the head only. The scFoundation paper fine-tunes one layer; its example
        code unfreezes the second-to-last block, we unfreeze the last one(s), whose output feeds
        the pooling directly.
    pooling
        Cell pooling of the encoder output fed to the head (see
        :meth:`~xtrimogene_sc.XTrimoGene.get_latent_representation`). ``"max"`` is the
        reference's choice (here over gene tokens only, T and S excluded).
    hidden_dim
        Width of the head's hidden layer (reference: 256).
    dropout
        Dropout before the head's output layer.

    Examples
    --------
    >>> clf = xtg.model.XTrimoGeneClassifier(model)  # doctest: +SKIP
    >>> clf.train(adata, labels_key="cell_type", max_epochs=20)  # doctest: +SKIP
    >>> labels, probabilities = clf.predict(query, return_probabilities=True)  # doctest: +SKIP
    """

    kind = _KIND

    def __init__(
        self,
        model: XTrimoGene | XTrimoGeneModule | str | Path,
        *,
        n_trainable_layers: int = 1,
        pooling: Pooling = "max",
        hidden_dim: int = 256,
        dropout: float = 0.1,
    ) -> None:
        source = backbone_module(model)
        check_trainable_layers(n_trainable_layers, source.config)
        check_pooling(pooling, source.config)
        require_positive_int("hidden_dim", hidden_dim)
        require_real("dropout", dropout, lambda v: 0 <= v < 1, "in [0, 1)")
        depth = source.config.encoder_depth
        self.backbone = copy.deepcopy(source)
        tuned = (f"encoder_blocks.{depth - i - 1}." for i in range(n_trainable_layers))
        prefixes = (*tuned, "encoder_norm.") if n_trainable_layers else ()
        # pretrained values of the layers that fine-tuning changes: every train() starts here
        self._pretrained_state = {
            k: v.clone() for k, v in self.backbone.state_dict().items() if k.startswith(prefixes)
        }
        self.n_trainable_layers = n_trainable_layers
        self.pooling = pooling
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.module: ClassifierModule | None = None
        self.classes_: np.ndarray = np.array([], dtype=object)
        self.temperature_ = 1.0
        self.labels_key: str | None = None
        self.history = pd.DataFrame()

    @classmethod
    def from_xtrimogene(
        cls, model: XTrimoGene | XTrimoGeneModule | str | Path, **kwargs: Any
    ) -> XTrimoGeneClassifier:
        """A classifier on a trained backbone, as ``SCANVI.from_scvi_model`` builds on SCVI.

        The same as ``XTrimoGeneClassifier(model, **kwargs)``; the backbone is copied.
        """
        return cls(model, **kwargs)

    def __repr__(self) -> str:
        state = f"{len(self.classes_)} classes" if self.module is not None else "not trained"
        return (
            f"XTrimoGeneClassifier({state}, {self.n_trainable_layers} trainable encoder "
            f"layer(s), pooling={self.pooling!r})"
        )

    def _weights(self) -> torch.nn.Module:
        return self.backbone if self.module is None else self.module

    def _build(self, classes: np.ndarray) -> ClassifierModule:
        self.classes_ = np.asarray(classes, dtype=object)
        self.module = ClassifierModule(
            self.backbone, len(classes), n_trainable_layers=self.n_trainable_layers,
            pooling=self.pooling, hidden_dim=self.hidden_dim, dropout=self.dropout,
        ).to(self.device)  # fmt: skip
        return self.module

    # ------------------------------------------------------------------ training
    def train(
        self,
        adata: AnnData,
        *,
        labels_key: str,
        max_epochs: int = 20,
        batch_size: int = 64,
        lr: float = 1e-3,
        backbone_lr: float | None = None,
        weight_decay: float = 0.01,
        validation_size: float = 0.1,
        early_stopping_patience: int = 8,
        min_cells_per_label: int = 2,
        layer: str | None = None,
        gene_symbols_key: str | None = None,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        """Fine-tune on labelled cells, keeping the epoch with the best validation macro-F1.

        Parameters
        ----------
        adata
            Raw counts (in memory or backed) with labels in ``obs[labels_key]``; cells are
            streamed in minibatches.
        labels_key
            ``obs`` column of cell-type labels. NaN or ``"Unknown"`` cells are ignored and labels
            with fewer than ``min_cells_per_label`` cells dropped, with warnings.
        max_epochs
            Upper bound on passes over the training cells.
        batch_size
            Cells per optimiser step (reference: 64 with 5-step gradient accumulation).
        lr, weight_decay
            AdamW learning rate of the head (reference: 1e-3) and weight decay.
        backbone_lr
            Learning rate of the fine-tuned encoder layers; default ``lr``, as in the reference.
            A lower value keeps more of the pretrained features.
        validation_size
            Stratified share of cells held out for early stopping and temperature calibration;
            0 trains for ``max_epochs`` without either.
        early_stopping_patience
            Stop after this many epochs without a better validation macro-F1.
        min_cells_per_label
            Smallest usable class size.
        layer, gene_symbols_key
            Where the counts and the gene symbols are.
        seed
            Seed of the split, the batch order, dropout and the head initialisation.
        progress
            Show a progress bar over epochs.
        """
        require_fit_args(
            lr=lr, weight_decay=weight_decay, backbone_lr=backbone_lr, seed=seed,
            max_epochs=max_epochs, batch_size=batch_size,
            early_stopping_patience=early_stopping_patience,
            min_cells_per_label=min_cells_per_label,
        )  # fmt: skip
        require_real("validation_size", validation_size, lambda v: 0 <= v < 1, "in [0, 1)")
        keep, labels, _ = usable_labels(adata.obs, labels_key, min_cells=min_cells_per_label)
        counts = read_counts(
            adata, layer=layer, gene_symbols_key=gene_symbols_key,
            panel=self.backbone.config.input_positions,
        )  # fmt: skip
        counts.checked()  # training reads the cells many times: check them once, first
        X, var_to_position = counts.X, counts.var_to_position
        classes, y = np.unique(labels, return_inverse=True)
        cells = np.flatnonzero(keep)
        torch.manual_seed(seed)
        self.backbone.load_state_dict(self._pretrained_state, strict=False)
        module = self._build(classes)
        train_pos, val_pos = calibration_split(y, validation_size, seed=seed)
        with self._training("XTrimoGeneClassifier.train") as stop:
            history, (val_logits, val_y) = fit_classifier(
                module, X, var_to_position,
                train=(cells[train_pos], y[train_pos]), validation=(cells[val_pos], y[val_pos]),
                max_epochs=max_epochs, batch_size=batch_size,
                lr=(lr, lr if backbone_lr is None else backbone_lr), weight_decay=weight_decay,
                patience=early_stopping_patience, seed=seed, stop=stop, progress=progress,
            )  # fmt: skip
            self.history = history
            self.labels_key = labels_key
            self.temperature_ = fit_temperature(val_logits, val_y) if len(val_y) >= 10 else 1.0
        logger.info(
            "fine-tuned on %d cells for %d epochs, best validation macro-F1 %.3f, temperature %.2f",
            len(train_pos), len(history), history["validation_macro_f1"].max(), self.temperature_,
        )  # fmt: skip

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def predict_proba(
        self,
        adata: AnnData,
        *,
        batch_size: int = 64,
        layer: str | None = None,
        gene_symbols_key: str | None = None,
        progress: bool = False,
        **kwargs: Any,
    ) -> np.ndarray:
        """Calibrated class probabilities ``(n_obs, n_classes)``, columns in ``classes_`` order."""
        module = self._trained()
        counts = read_counts(
            adata, layer=layer, gene_symbols_key=gene_symbols_key,
            panel=self.backbone.config.input_positions,
        )  # fmt: skip
        module.eval()
        out = np.empty((counts.X.shape[0], len(self.classes_)), dtype=np.float64)
        for rows, cells in counts.batches(
            batch_size=batch_size, progress=progress, desc="classify"
        ):
            out[rows] = module(cells.to(self.device)).double().cpu().numpy()
        return softmax(out / self.temperature_, axis=1)

    def predict(
        self,
        adata: AnnData,
        *,
        return_probabilities: bool = False,
        batch_size: int = 64,
        layer: str | None = None,
        gene_symbols_key: str | None = None,
    ) -> np.ndarray | tuple[np.ndarray, pd.DataFrame]:
        """Predicted labels, and with ``return_probabilities`` a cells x classes DataFrame."""
        proba = self.predict_proba(
            adata, batch_size=batch_size, layer=layer, gene_symbols_key=gene_symbols_key
        )
        labels = self.classes_[proba.argmax(axis=1)]
        if not return_probabilities:
            return labels
        frame = pd.DataFrame(proba, index=adata.obs_names, columns=list(self.classes_))
        return labels, frame

    def _trained(self) -> ClassifierModule:
        if self.module is None:
            msg = "the classifier is not trained; call train(adata, labels_key=...) first"
            raise RuntimeError(msg)
        return self.module

    # ------------------------------------------------------------------ persistence
    def save(self, dir_path: str | Path, *, overwrite: bool = False) -> None:
        """Write weights (safetensors), config and labels (json) atomically to ``dir_path``."""
        module = self._trained()
        extra = {
            "classes": [str(c) for c in self.classes_],
            "labels_key": self.labels_key,
            "temperature": self.temperature_,
            "head": {
                "n_trainable_layers": self.n_trainable_layers, "pooling": self.pooling,
                "hidden_dim": self.hidden_dim, "dropout": self.dropout,
            },
            "history": self.history.to_dict(orient="list"),
        }  # fmt: skip
        save_directory(
            dir_path, config=self.backbone.config, state_dict=module.state_dict(),
            vocab=GeneVocab.default(), extra=extra, kind=_KIND, overwrite=overwrite,
        )  # fmt: skip

    @classmethod
    def load(
        cls, dir_path: str | Path, *, device: str | torch.device = "cpu"
    ) -> XTrimoGeneClassifier:
        """Load a classifier written by :meth:`save` (no pickle is read)."""
        config, state_dict, _, meta = load_directory(dir_path, kind=_KIND)
        classifier = cls(XTrimoGeneModule(config), **meta["head"])
        module = classifier._build(np.asarray(meta["classes"], dtype=object))
        load_state_checked(module, state_dict)
        classifier.temperature_ = float(meta["temperature"])
        classifier.labels_key = meta.get("labels_key")
        classifier.history = pd.DataFrame(meta.get("history", {}))
        module.to(device).eval()
        return classifier
