"""Perturbation-response prediction on an xTrimoGene backbone (genetic and treatment conditions)."""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from xtrimogene_sc._arguments import require_fit_args, require_positive_int, require_real
from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.base._saved import load_state_checked
from xtrimogene_sc.base._task import TaskModel
from xtrimogene_sc.data._iterate import iter_batches
from xtrimogene_sc.data._tokenize import tokenize_counts
from xtrimogene_sc.data._vocab import GeneVocab
from xtrimogene_sc.model._backbone import load_backbone
from xtrimogene_sc.model._io import load_directory, save_directory
from xtrimogene_sc.module._freezing import check_trainable_layers
from xtrimogene_sc.module._module import XTrimoGeneModule
from xtrimogene_sc.module._pooling import Pooling, check_pooling
from xtrimogene_sc.perturbation._building import (
    GeneRepresentation,
    build_module,
    gene_features,
)
from xtrimogene_sc.perturbation._predictor import ControlCells, PerturbationPredictor
from xtrimogene_sc.perturbation._setup import (
    Condition,
    GeneSpace,
    PerturbationSetup,
    Profiles,
    compute_profiles,
)
from xtrimogene_sc.perturbation._training import (
    TrainingPairs,
    fit_head,
    frozen_states,
    live_states,
)

if TYPE_CHECKING:
    from anndata import AnnData

    from xtrimogene_sc.model._model import XTrimoGene

logger = logging.getLogger(__name__)

_KIND = "xtrimogene_perturbation"


class XTrimoGenePerturbation(PerturbationPredictor, TaskModel):
    """Predict expression under genetic perturbations or treatments from a trained xTrimoGene.

    A control cell's state is the backbone encoder's pooled output; a genetic condition is the
    set of its genes, each represented by the backbone's gene embedding (so genes never seen
    perturbed in training can be predicted); a treatment gets a learned embedding. A small head
    maps (state, condition) to the shift of the cell's log-normalised profile: additive over the
    genes of a combination plus a learned interaction (see
    :class:`~xtrimogene_sc.perturbation.PerturbationHead`). Expression is on the model's scale
    ``ln(1 + 1e4 * c / N)``, ``N`` the cell's total count over vocabulary genes, for the genes of
    the training data.

    Parameters
    ----------
    adata
        Training data registered with :meth:`setup_anndata`.
    backbone
        A trained :class:`~xtrimogene_sc.XTrimoGene` or a path for
        :meth:`XTrimoGene.load <xtrimogene_sc.XTrimoGene.load>`. Its weights are copied.
    gene_representation
        Gene embedding of a perturbed gene: ``"static"`` (the backbone's learned gene-embedding
        table), ``"context"`` (the decoder's context embedding of the gene, averaged over
        ``context_cells`` control cells) or ``"both"`` (concatenated). Unused for treatments.
    n_trainable_layers
        Encoder blocks fine-tuned with the head, counted from the last; 0 (default) keeps the
        backbone frozen and computes each cell state once.
    pooling
        Pooling of the encoder output into a cell state (see
        :meth:`~xtrimogene_sc.XTrimoGene.get_latent_representation`).
    hidden_dim, dropout
        Width and dropout of the head.
    transfer_prob
        Probability that a gene seen in training is represented, during training, by what its
        backbone embedding borrows from the other seen genes (as an unseen gene always is).
    interaction
        Learn a non-additive term for combinations from the training combinations. Off by
        default: where interactions are specific to each pair and not predictable from the
        genes, such a term fits the training pairs and makes held-out pairs worse
        (:doc:`/perturbation`).
    context_cells
        Control cells averaged for ``"context"`` gene embeddings.

    Examples
    --------
    >>> xtg.XTrimoGenePerturbation.setup_anndata(adata, condition_key="condition", control="ctrl")  # doctest: +SKIP
    >>> model = xtg.XTrimoGenePerturbation(adata, backbone=backbone)  # doctest: +SKIP
    >>> model.train()  # doctest: +SKIP
    >>> pred = model.predict(adata_ctrl, conditions=["KLF1", "KLF1+MAP2K6"])  # doctest: +SKIP
    """

    method = "xTrimoGene"
    kind = _KIND

    def __init__(
        self,
        adata: AnnData,
        *,
        backbone: XTrimoGene | str | Path,
        gene_representation: GeneRepresentation = "static",
        n_trainable_layers: int = 0,
        pooling: Pooling = "concat",
        hidden_dim: int = 128,
        dropout: float = 0.1,
        transfer_prob: float = 0.5,
        interaction: bool = False,
        context_cells: int = 256,
    ) -> None:
        super().__init__(adata)
        source = load_backbone(backbone)
        check_trainable_layers(n_trainable_layers, source.config)
        check_pooling(pooling, source.config)
        require_positive_int("hidden_dim", hidden_dim)
        require_real("dropout", dropout, lambda v: 0 <= v < 1, "in [0, 1)")
        require_real("transfer_prob", transfer_prob, lambda v: 0 <= v <= 1, "in [0, 1]")
        require_positive_int("context_cells", context_cells)
        if gene_representation not in ("static", "context", "both"):
            msg = f"gene_representation must be 'static', 'context' or 'both', got {gene_representation!r}"
            raise ValueError(msg)
        self.hparams = {
            "gene_representation": gene_representation, "n_trainable_layers": n_trainable_layers,
            "pooling": pooling, "hidden_dim": hidden_dim, "dropout": dropout,
            "transfer_prob": transfer_prob, "interaction": interaction,
        }  # fmt: skip
        self.seen_ = self._seen_members(adata)
        features = None
        if self.setup.condition_type == "genetic":
            features = gene_features(
                source, adata, self.setup, self.genes, gene_representation, context_cells
            )
        self.module = build_module(
            copy.deepcopy(source.module), self.genes, features, self.seen_,
            **self.hparams,
        )  # fmt: skip
        self.history = pd.DataFrame()

    @classmethod
    def from_xtrimogene(
        cls, model: XTrimoGene | str | Path, adata: AnnData, **kwargs: Any
    ) -> XTrimoGenePerturbation:
        """A perturbation model on a trained backbone, as ``SCANVI.from_scvi_model`` is on SCVI.

        The same as ``XTrimoGenePerturbation(adata, backbone=model, **kwargs)``; ``adata`` must
        be registered with :meth:`setup_anndata`. The backbone is copied.
        """
        return cls(adata, backbone=model, **kwargs)

    def __repr__(self) -> str:
        state = "trained" if self.profiles_ is not None else "not trained"
        return (
            f"XTrimoGenePerturbation({self.setup.condition_type}, {len(self.genes.names)} genes, "
            f"{self.hparams['n_trainable_layers']} trainable encoder layer(s), {state})"
        )

    def _seen_members(self, adata: AnnData) -> list[str]:
        """Treatments, or genes perturbed in any training condition (alone or combined)."""
        names = adata.obs[self.setup.condition_key].astype(str).unique()
        return sorted({m for n in names for m in self.setup.parse(n)})

    def _weights(self) -> torch.nn.Module:
        return self.module

    # ------------------------------------------------------------------ training
    def train(
        self,
        *,
        max_steps: int = 1500,
        batch_size: int = 128,
        lr: float = 3e-3,
        backbone_lr: float | None = None,
        weight_decay: float = 1e-4,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        """Fit the head (and any trainable encoder layers) to the training responses.

        Parameters
        ----------
        max_steps
            Optimiser steps; each draws ``batch_size`` (control cell, perturbed group) pairs.
        batch_size
            Pairs per step.
        lr, weight_decay
            AdamW learning rate of the head and weight decay.
        backbone_lr
            Learning rate of fine-tuned encoder layers (default ``lr``).
        seed
            Seed of the pair sampling and the head initialisation.
        progress
            Show a progress bar.
        """
        require_fit_args(
            lr=lr, weight_decay=weight_decay, backbone_lr=backbone_lr, seed=seed,
            max_steps=max_steps, batch_size=batch_size,
        )  # fmt: skip
        if self.adata is None:
            msg = "this model was loaded without training data; it can predict but not train"
            raise ValueError(msg)
        torch.manual_seed(seed)
        profiles = compute_profiles(self.adata, self.setup, self.genes)
        if not profiles.conditions:
            msg = "the training data has no perturbed cells: nothing to learn a response from"
            raise ValueError(msg)
        self.profiles_ = profiles
        cells = self._control_cells(self.adata, None)
        pairs = self._pairs(profiles, cells)
        raw = self._raw_states(cells)
        self.module.state_mean.copy_(raw.mean(dim=0))
        self.module.state_scale.copy_(raw.std(dim=0).clamp_min(1e-6))
        if self.hparams["n_trainable_layers"] == 0:
            state_of = frozen_states(self.module.standardise(raw))
        else:
            X, var_to_position, rows = cells.X, cells.var_to_position, cells.rows
            state_of = live_states(
                self.module, lambda i: tokenize_counts(X[rows[i]], var_to_position)
            )
        with self._training("XTrimoGenePerturbation.train") as stop:
            self.history = fit_head(
                self.module, pairs, state_of, max_steps=max_steps, batch_size=batch_size, lr=lr,
                backbone_lr=lr if backbone_lr is None else backbone_lr, weight_decay=weight_decay,
                seed=seed, progress=progress, stop=stop,
            )  # fmt: skip
        logger.info("trained on %d groups; final loss %.4g", len(pairs.group_type),
                    self.history["train_loss"].iloc[-1])  # fmt: skip

    def _pairs(self, profiles: Profiles, cells: ControlCells) -> TrainingPairs:
        groups = profiles.observed_groups()
        cells_of_type = [np.flatnonzero(cells.cell_types == t) for t in profiles.cell_types]
        members, mask = self._members([profiles.conditions[i] for i, _ in groups])
        targets = np.stack([profiles.response[i, t] for i, t in groups]).astype(np.float32)
        group_type = np.array([t for _, t in groups])
        return TrainingPairs(
            members.to(self.device), mask.to(self.device),
            torch.from_numpy(targets).to(self.device), group_type, cells_of_type,
        )  # fmt: skip

    def _members(self, conditions: list[Condition]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded member ids ``(n, M)`` and mask: vocabulary positions or treatment indices."""
        if self.setup.condition_type == "genetic":
            ids = [GeneVocab.default().positions(list(c)).tolist() for c in conditions]
        else:
            index = {t: i for i, t in enumerate(self.seen_)}
            ids = [[index[c[0]]] for c in conditions]
        width = max(1, *(len(i) for i in ids))
        members = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.bool)
        for row, values in enumerate(ids):
            members[row, : len(values)] = torch.tensor(values, dtype=torch.long)
            mask[row, : len(values)] = True
        return members, mask

    @torch.inference_mode()
    def _raw_states(self, cells: ControlCells, batch_size: int = 64) -> torch.Tensor:
        """Pooled encoder output of every control cell ``(n_cells, D)``, in ``cells`` order."""
        self.module.eval()
        X = cells.X[np.sort(cells.rows)]
        order = np.argsort(np.argsort(cells.rows))  # position of each cell in sorted order
        out = torch.empty((len(cells.rows), self.module.state_mean.numel()), device=self.device)
        for rows, batch in iter_batches(X, cells.var_to_position, batch_size=batch_size,
                                        progress=False):  # fmt: skip
            out[torch.as_tensor(rows, device=self.device)] = self.module.raw_state(
                batch.to(self.device)
            )
        return out[torch.as_tensor(order, device=self.device)].clone()

    # ------------------------------------------------------------------ prediction
    def _check_condition(self, name: str, condition: Condition) -> None:
        if self.setup.condition_type == "treatment" and condition[0] not in self.seen_:
            msg = (
                f"unknown treatment {name!r}; a treatment's embedding is learned from its cells, "
                f"and this model was trained on {self.seen_}"
            )
            raise ValueError(msg)
        super()._check_condition(name, condition)
        panel = self.module.backbone.config.input_positions
        if self.setup.condition_type == "genetic" and panel is not None:
            positions = GeneVocab.default().positions(list(condition))
            read = set(panel)
            outside = [g for g, p in zip(condition, positions, strict=True) if p not in read]
            if outside:
                warnings.warn(
                    f"condition {name!r}: gene(s) {outside} are outside the backbone's gene panel "
                    f"({len(panel):,} genes), so their embeddings were never trained; the "
                    "prediction rests on the other genes. Pretrain the backbone with "
                    "n_top_genes=None (every gene) for genetic perturbations",
                    UserWarning,
                    stacklevel=3,
                )

    def _profiles(self) -> Profiles:
        if self.history.empty:
            msg = "XTrimoGenePerturbation is not trained; call train() first"
            raise RuntimeError(msg)
        return self.profiles_

    @torch.inference_mode()
    def _shift(self, condition: Condition, cells: ControlCells) -> np.ndarray:
        if "state" not in cells.cache:
            cells.cache["state"] = self.module.standardise(self._raw_states(cells))
        states = cells.cache["state"]
        members, mask = self._members([condition])
        members, mask = members.to(self.device), mask.to(self.device)
        self.module.eval()
        out = []
        for start in range(0, len(states), 512):
            state = states[start : start + 512]
            n = len(state)
            out.append(self.module.head(state, members.expand(n, -1), mask.expand(n, -1)))
        return torch.cat(out).float().cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, dir_path: str | Path, *, overwrite: bool = False) -> None:
        """Write weights (safetensors) and settings (json) atomically to ``dir_path``."""
        self._profiles()
        extra = {
            "setup": self.setup.to_dict(),
            "genes": self.genes.positions.tolist(),
            "seen": self.seen_,
            "training_conditions": self.training_conditions,
            "head": self.hparams,
            "gene_feature_dim": self._gene_feature_dim(),
            "history": self.history.to_dict(orient="list"),
        }
        save_directory(
            dir_path, config=self.module.backbone.config, state_dict=self.module.state_dict(),
            vocab=GeneVocab.default(), extra=extra, kind=_KIND, overwrite=overwrite,
        )  # fmt: skip

    def _gene_feature_dim(self) -> int:
        head = self.module.head
        return int(head.gene_features.shape[1]) if head.genetic else 0

    @classmethod
    def load(
        cls, dir_path: str | Path, *, adata: AnnData | None = None, device: str = "cpu"
    ) -> XTrimoGenePerturbation:
        """Load a model written by :meth:`save` (no pickle is read).

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        adata
            Optional training data to attach (needed only to train further).
        device
            Where to put the weights.
        """
        config, state_dict, _, meta = load_directory(dir_path, kind=_KIND)
        model = cls.__new__(cls)
        positions = np.asarray(meta["genes"], dtype=np.int64)
        names = GeneVocab.default().names[positions].astype(str)
        model._attach(PerturbationSetup(**meta["setup"]), GeneSpace(positions, names), adata)
        model.hparams = dict(meta["head"])
        model.seen_ = list(meta["seen"])
        features = None
        if meta["gene_feature_dim"]:
            features = torch.zeros((TOKENS.N_POSITIONS, meta["gene_feature_dim"]))
        model.module = build_module(
            XTrimoGeneModule(config), model.genes, features, model.seen_, **model.hparams
        )
        load_state_checked(model.module, state_dict)
        model.module.to(device).eval()
        model.history = pd.DataFrame(meta.get("history", {}))
        model.profiles_ = _names_only(meta["training_conditions"], model.setup)
        return model


def _names_only(names: list[str], setup: PerturbationSetup) -> Profiles:
    """Profiles stand-in of a loaded model: the training condition names, no data."""
    conditions = [setup.parse(n) for n in names]
    return Profiles(conditions, list(names), [], np.zeros((len(names), 0, 0)),
                    np.zeros((len(names), 0)), np.zeros((0, 0)))  # fmt: skip
