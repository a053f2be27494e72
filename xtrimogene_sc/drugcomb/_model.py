"""User-facing drug-combination model: tables of combinations in, synergy predictions out."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from xtrimogene_sc._arguments import require_fit_args, require_positive_int, require_real
from xtrimogene_sc.base._saved import load_checked, load_state_checked, save_checked
from xtrimogene_sc.base._task import TaskModel
from xtrimogene_sc.drugcomb._data import COLUMNS
from xtrimogene_sc.drugcomb._module import Architecture, SynergyConfig, SynergyModule
from xtrimogene_sc.drugcomb._splits import random_folds
from xtrimogene_sc.drugcomb._tables import cell_features, drug_features, lookup
from xtrimogene_sc.drugcomb._training import IndexedRows, fit, forward_all

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

Task = Literal["classification", "regression"]
_KIND = "xtrimogene_drug_combination"


class DrugCombinationModel(TaskModel):
    """Predict the synergy of two drugs in a cell line (DeepDDS-style, order-invariant).

    Drugs are encoded from Morgan fingerprints of their SMILES by one shared network; the pair is
    ``[h_a + h_b, h_a * h_b]``, so A+B and B+A give identical predictions by construction. The
    cell line enters as a feature vector from any ``obsm`` key of an AnnData of cell lines: the
    xTrimoGene embedding (``X_xtg``, from :func:`xtrimogene_sc.tl.embed` with
    ``input_type="bulk"``), a released scFoundation embedding, or plain expression. With
    ``cell_key=None`` the model uses the drugs only.

    Parameters
    ----------
    drugs
        Drug name -> SMILES (dict or Series; featurised with Morgan fingerprints, needs RDKit), or
        a drugs x features DataFrame of your own features.
    cell_lines
        AnnData with one row per cell line (``obs_names`` are the names used in the combination
        tables). Features are standardised per column over these lines.
    cell_key
        ``obsm`` key of the cell-line features; ``None`` for a drugs-only model.
    task
        ``"classification"`` (synergistic or not; rows with a NaN label are left out) or
        ``"regression"`` (the Loewe score).
    architecture
        ``"symmetric"`` (default, invariant by construction) or ``"concat"``: DeepSynergy's MLP
        on ``[x_a, x_b, x_cell]``, trained on both drug orders and averaged over both at
        prediction.
    radius, n_bits
        Morgan fingerprint radius and length (for SMILES input).
    **network
        :class:`~xtrimogene_sc.drugcomb.SynergyConfig` fields: ``drug_dim``, ``cell_dim``,
        ``hidden_dim``, ``n_hidden``, ``dropout``, ``input_dropout``.

    Examples
    --------
    >>> import xtrimogene_sc as xtg
    >>> data = xtg.drugcomb.load_oneil("data/drug_combination")  # doctest: +SKIP
    >>> cells = data.expression
    >>> xtg.tl.embed(cells, model, input_type="bulk")  # doctest: +SKIP
    >>> synergy = xtg.DrugCombinationModel(data.smiles, cells, cell_key="X_xtg")  # doctest: +SKIP
    >>> synergy.train(data.combinations)  # doctest: +SKIP
    >>> synergy.predict(data.combinations)  # doctest: +SKIP
    """

    def __init__(
        self,
        drugs: Mapping[str, str] | pd.Series | pd.DataFrame,
        cell_lines: AnnData | None = None,
        *,
        cell_key: str | None = "X_xtg",
        task: Task = "classification",
        architecture: Architecture = "symmetric",
        radius: int = 2,
        n_bits: int = 1024,
        **network: Any,
    ) -> None:
        if task not in ("classification", "regression"):
            msg = f"task must be 'classification' or 'regression', got {task!r}"
            raise ValueError(msg)
        drug_table, self.featurization = drug_features(drugs, radius=radius, n_bits=n_bits)
        cell_table = cell_features(cell_lines, cell_key)
        self.task: Task = task
        self.cell_key = cell_key
        self.drug_names = pd.Index(drug_table.index.astype(str), name="drug")
        self.cell_names = pd.Index(
            [] if cell_table is None else cell_table.index, name="cell_line"
        )
        config = SynergyConfig(
            n_drug_features=drug_table.shape[1],
            n_cell_features=0 if cell_table is None else cell_table.shape[1],
            architecture=architecture,
            **network,
        )
        cells = None if cell_table is None else torch.from_numpy(cell_table.to_numpy(np.float32))
        self.module = SynergyModule(
            config, torch.from_numpy(drug_table.to_numpy(np.float32)), cells
        )
        self.target_mean, self.target_std = 0.0, 1.0
        self.history = pd.DataFrame()
        self.is_trained = False

    kind = _KIND

    def _weights(self) -> nn.Module:
        return self.module

    def __repr__(self) -> str:
        cells = f"cell features {self.cell_key!r}" if self.cell_key else "no cell features"
        state = "trained" if self.is_trained else "not trained"
        return (
            f"DrugCombinationModel({self.task}, {self.module.config.architecture}, "
            f"{len(self.drug_names)} drugs, {len(self.cell_names)} cell lines, {cells}, {state})"
        )

    # ------------------------------------------------------------------ rows -> indices
    def _check_columns(self, combinations: Any, what: str, *, target: bool) -> None:
        """Refuse a table without the columns this model reads, naming them."""
        if not isinstance(combinations, pd.DataFrame):
            msg = f"{what} must be a pandas DataFrame, got {type(combinations).__name__}"
            raise TypeError(msg)
        needed = [COLUMNS.DRUG_A, COLUMNS.DRUG_B] + ([COLUMNS.CELL_LINE] if self.cell_key else [])
        if target:
            needed.append(COLUMNS.LABEL if self.task == "classification" else COLUMNS.SCORE)
        absent = [c for c in needed if c not in combinations.columns]
        if absent:
            msg = (
                f"{what} lack the column(s) {absent}; a {self.task} model reads {needed} "
                f"(the table has {list(combinations.columns)[:8]})"
            )
            raise KeyError(msg)

    def _indices(self, combinations: pd.DataFrame) -> tuple[torch.Tensor, ...]:
        """Index tensors of the drugs and cell lines of each row; unknown names are refused."""
        self._check_columns(combinations, "combinations", target=False)
        a = lookup(self.drug_names, combinations[COLUMNS.DRUG_A], "drug")
        b = lookup(self.drug_names, combinations[COLUMNS.DRUG_B], "drug")
        if self.cell_key:
            cell = lookup(self.cell_names, combinations[COLUMNS.CELL_LINE], "cell line")
        else:
            cell = np.zeros(len(combinations), dtype=np.int64)
        return tuple(torch.from_numpy(x) for x in (a, b, cell))

    def _rows(self, combinations: pd.DataFrame) -> IndexedRows:
        """Rows usable for this task, with standardised targets (columns checked by train)."""
        column = COLUMNS.LABEL if self.task == "classification" else COLUMNS.SCORE
        target = combinations[column].to_numpy(dtype=np.float64)
        usable = np.isfinite(target)
        if self.task == "classification" and not np.isin(target[usable], (0.0, 1.0)).all():
            msg = f"{column!r} must hold 0, 1 or NaN (see xtg.drugcomb.synergy_labels)"
            raise ValueError(msg)
        frame = combinations[usable]
        a, b, cell = self._indices(frame)
        y = (target[usable] - self.target_mean) / self.target_std
        return IndexedRows(a, b, cell, torch.from_numpy(y.astype(np.float32)))

    # ------------------------------------------------------------------ training
    def train(
        self,
        combinations: pd.DataFrame,
        *,
        validation: pd.DataFrame | None = None,
        validation_size: float = 0.1,
        max_epochs: int = 200,
        batch_size: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        early_stopping_patience: int = 10,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        """Fit on a table of combinations, keeping the epoch with the best validation loss.

        Parameters
        ----------
        combinations
            Rows with ``drug_a``, ``drug_b``, ``cell_line`` and the target: ``label`` (1, 0 or
            NaN) for classification, ``synergy_loewe`` for regression. Rows with a missing
            target are left out.
        validation
            Rows for early stopping. Default: ``validation_size`` of the (pair, cell line)
            triplets of ``combinations``, held out. For a leave-cell-line-out or leave-drug-out
            evaluation pass a validation set split the same way (see
            :func:`~xtrimogene_sc.drugcomb.make_folds`).
        validation_size
            Share held out when ``validation`` is not given; 0 trains ``max_epochs`` epochs.
        max_epochs
            Upper bound on passes over the training rows.
        batch_size
            Combinations per optimiser step.
        lr, weight_decay
            AdamW learning rate and weight decay.
        early_stopping_patience
            Stop after this many epochs without a lower validation loss.
        seed
            Seed of the weight initialisation, the validation split, dropout and batch order.
        progress
            Show a progress bar over epochs.
        """
        require_fit_args(
            lr=lr, weight_decay=weight_decay, seed=seed, max_epochs=max_epochs,
            batch_size=batch_size, early_stopping_patience=early_stopping_patience,
        )  # fmt: skip
        require_real("validation_size", validation_size, lambda v: 0 <= v < 1, "in [0, 1)")
        self._check_columns(combinations, "combinations", target=True)
        if validation is not None:
            self._check_columns(validation, "validation", target=True)
        torch.manual_seed(seed)
        if validation is None and validation_size > 0:
            n_folds = max(2, round(1 / validation_size))
            train_pos, val_pos = random_folds(combinations, n_folds=n_folds, seed=seed)[0]
            combinations, validation = combinations.iloc[train_pos], combinations.iloc[val_pos]
        if self.task == "regression":
            scores = combinations[COLUMNS.SCORE].to_numpy(dtype=np.float64)
            scores = scores[np.isfinite(scores)]
            self.target_mean, self.target_std = float(scores.mean()), float(scores.std() or 1.0)
        train_rows = self._rows(combinations)
        if len(train_rows) == 0:
            msg = f"no training rows with a {self.task} target"
            raise ValueError(msg)
        val_rows = None if validation is None else self._rows(validation)
        self.module.apply(_reset)
        loss_fn = nn.BCEWithLogitsLoss() if self.task == "classification" else nn.MSELoss()
        with self._training("DrugCombinationModel.train") as stop:
            self.history = fit(
                self.module, train_rows, val_rows, loss_fn=loss_fn, max_epochs=max_epochs,
                batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                patience=early_stopping_patience, seed=seed, both_orders=self._both_orders,
                progress=progress, stop=stop,
            )  # fmt: skip
            self.is_trained = True
        logger.info(
            "trained on %d combinations for %d epochs, best validation loss %.4f",
            len(train_rows), len(self.history), self.history["validation_loss"].min(),
        )  # fmt: skip

    @property
    def _both_orders(self) -> bool:
        return self.module.config.architecture == "concat"

    # ------------------------------------------------------------------ inference
    def predict(self, combinations: pd.DataFrame, *, batch_size: int = 8192) -> np.ndarray:
        """Synergy probability (classification) or Loewe score (regression) of each row.

        Parameters
        ----------
        combinations
            Rows with ``drug_a``, ``drug_b`` and ``cell_line`` (targets are not needed).
        batch_size
            Rows per forward pass.

        Returns
        -------
        float64 array in row order. Swapping ``drug_a`` and ``drug_b`` gives the same values.
        """
        if not self.is_trained:
            msg = "the model is not trained; call train(combinations) first"
            raise RuntimeError(msg)
        require_positive_int("batch_size", batch_size)
        a, b, cell = self._indices(combinations)
        rows = IndexedRows(a, b, cell, torch.zeros(len(a)))
        out = forward_all(self.module, rows, batch_size=batch_size, both_orders=self._both_orders)
        out = out.double().numpy()
        if self.task == "classification":
            return 1.0 / (1.0 + np.exp(-out))
        return out * self.target_std + self.target_mean

    # ------------------------------------------------------------------ persistence
    def save(self, dir_path: str | Path, *, overwrite: bool = False) -> None:
        """Write weights and feature tables (safetensors) and settings (json) atomically.

        The directory is checksummed like every saved model of this package: a file changed
        after saving is refused by :meth:`load`.

        Parameters
        ----------
        dir_path
            Directory to create (or replace, with ``overwrite``).
        overwrite
            Replace an existing directory.
        """
        meta = {
            "task": self.task, "config": self.module.config.to_dict(), "cell_key": self.cell_key,
            "featurization": self.featurization, "drugs": list(self.drug_names),
            "cell_lines": list(self.cell_names), "target_mean": self.target_mean,
            "target_std": self.target_std, "is_trained": self.is_trained,
            "history": self.history.to_dict(orient="list"),
        }  # fmt: skip
        save_checked(
            dir_path, kind=_KIND, meta=meta, state_dict=self.module.state_dict(),
            overwrite=overwrite,
        )  # fmt: skip

    @classmethod
    def load(cls, dir_path: str | Path) -> DrugCombinationModel:
        """Load a model written by :meth:`save` (no pickle is read).

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        """
        meta, state = load_checked(dir_path, kind=_KIND)
        model = cls.__new__(cls)
        model.task, model.cell_key = meta["task"], meta["cell_key"]
        model.featurization = meta["featurization"]
        model.drug_names = pd.Index(meta["drugs"], name="drug")
        model.cell_names = pd.Index(meta["cell_lines"], name="cell_line")
        config = SynergyConfig(**meta["config"])
        cells = state["cell_table"] if config.n_cell_features else None
        model.module = SynergyModule(config, state["drug_table"], cells)
        load_state_checked(model.module, state)
        model.module.eval()
        model.target_mean, model.target_std = meta["target_mean"], meta["target_std"]
        model.history = pd.DataFrame(meta.get("history", {})).rename_axis("epoch")
        model.is_trained = bool(meta["is_trained"])
        return model


def _reset(layer: nn.Module) -> None:
    if isinstance(layer, nn.Linear):
        layer.reset_parameters()
