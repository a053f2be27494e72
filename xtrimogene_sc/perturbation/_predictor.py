"""What every perturbation predictor shares: registration, condition checks and ``predict``.

A predictor maps (control cell, condition) to a shift of the cell's log-normalised profile. The
predicted profile of a cell under a condition is its own profile plus that shift; averaged over
the control cells of a type, it is the predicted mean of that type under the condition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from xtrimogene_sc.data._vocab import GeneVocab
from xtrimogene_sc.perturbation._setup import (
    SCALE,
    Condition,
    GeneSpace,
    PerturbationSetup,
    Profiles,
    align_genes,
    aligned_counts,
    cell_types_of,
    condition_labels,
    group_means,
    iter_lognorm,
    read_setup,
    register,
    warn_renamed,
)

if TYPE_CHECKING:
    import scipy.sparse as sp

PREDICTION_KEY = "xtg_perturbation_prediction"
MAX_OUTPUT_BYTES = 2 * 1024**3
Aggregate = Literal["cells", "mean"]


@dataclass
class ControlCells:
    """The control cells a prediction starts from, read lazily from their AnnData."""

    X: Any
    var_to_position: np.ndarray
    genes: GeneSpace
    rows: np.ndarray  # rows of the AnnData
    cell_types: np.ndarray  # type of each selected cell
    obs_names: np.ndarray
    cache: dict[str, Any] = field(default_factory=dict)  # e.g. the model's cell states

    @property
    def type_names(self) -> list[str]:
        """Cell types present, sorted."""
        return sorted(set(self.cell_types))

    def values(self) -> sp.csr_matrix:
        """Log-normalised values ``(n_cells, n_genes)`` in the order of :attr:`rows` (sparse)."""
        if "values" not in self.cache:
            import scipy.sparse as sp

            pieces = list(iter_lognorm(self.X, self.var_to_position, self.genes, self.rows))
            read = np.concatenate([r for r, _ in pieces])  # rows in reading order
            stacked = sp.vstack([v for _, v in pieces]).tocsr()
            position = {r: i for i, r in enumerate(read)}
            self.cache["values"] = stacked[[position[r] for r in self.rows]]
        return self.cache["values"]

    def type_means(self) -> np.ndarray:
        """Control mean of each type in :attr:`type_names` ``(n_types, n_genes)``."""
        if "type_means" not in self.cache:
            codes = np.full(self.X.shape[0], -1, dtype=np.int64)
            codes[self.rows] = pd.Categorical(self.cell_types, categories=self.type_names).codes
            self.cache["type_means"], _ = group_means(
                self.X, self.var_to_position, self.genes, codes, len(self.type_names)
            )
        return self.cache["type_means"]


class PerturbationPredictor:
    """Base of :class:`~xtrimogene_sc.model.XTrimoGenePerturbation` and the baselines.

    Subclasses implement :meth:`_shift` (and may refine :meth:`_check_condition`).
    """

    method = "base"

    def __init__(self, adata: AnnData) -> None:
        setup = read_setup(adata)
        self._attach(setup, GeneSpace.from_alignment(align_genes(adata, setup)), adata)

    def _attach(self, setup: PerturbationSetup, genes: GeneSpace, adata: AnnData | None) -> None:
        self.setup = setup
        self.genes = genes
        self.adata = adata
        self.profiles_: Profiles | None = None

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        *,
        condition_key: str = "condition",
        control: str = "ctrl",
        cell_type_key: str | None = None,
        condition_type: Literal["auto", "genetic", "treatment"] = "auto",
        layer: str | None = None,
        gene_symbols_key: str | None = None,
    ) -> None:
        """Register raw counts with perturbation labels (stored in ``adata.uns["xtg_perturbation"]``).

        Parameters
        ----------
        adata
            Cells x genes raw counts of control and perturbed cells.
        condition_key
            ``obs`` column naming each cell's condition: the control label, a treatment (e.g.
            ``"stimulated"``) or gene symbols joined by ``+`` (``"KLF1"``, ``"KLF1+MAP2K6"``;
            GEARS-style ``"KLF1+ctrl"`` means ``"KLF1"``).
        control
            Label of the unperturbed cells in ``obs[condition_key]``.
        cell_type_key
            Optional ``obs`` column of cell types: responses are then measured per type against
            the control cells of the same type, and predictions start from a type's control
            cells (the scGen protocol).
        condition_type
            ``"genetic"`` (conditions are vocabulary genes), ``"treatment"`` (each condition is
            an opaque label with a learned embedding) or ``"auto"``: genetic when the conditions
            name vocabulary genes, treatment when none of them does.
        layer
            Layer with raw counts; ``None`` uses ``adata.X``.
        gene_symbols_key
            ``var`` column of HGNC symbols when ``var_names`` are Ensembl IDs.

        Raises
        ------
        ValueError
            No control cells; perturbed genes outside the vocabulary (genetic); a cell type
            with perturbed cells but no control cells; counts that are not raw counts.
        KeyError
            ``condition_key`` or ``cell_type_key`` is not an ``obs`` column.
        """
        register(
            adata, condition_key=condition_key, control=control, cell_type_key=cell_type_key,
            condition_type=condition_type, layer=layer, gene_symbols_key=gene_symbols_key,
        )  # fmt: skip

    # ------------------------------------------------------------------ properties
    @property
    def var_names(self) -> pd.Index:
        """The genes predicted (vocabulary symbols), in output order."""
        return pd.Index(self.genes.names)

    @property
    def training_conditions(self) -> list[str]:
        """Names of the perturbed conditions seen in training."""
        return list(self._profiles().names)

    def _profiles(self) -> Profiles:
        if self.profiles_ is None:
            msg = f"{type(self).__name__} is not trained; call train() first"
            raise RuntimeError(msg)
        return self.profiles_

    # ------------------------------------------------------------------ conditions
    def _check_conditions(self, conditions: Sequence[str]) -> list[Condition]:
        parsed = condition_labels(conditions, self.setup)
        if self.setup.condition_type == "genetic":
            warn_renamed(list(conditions), self.setup.control, stacklevel=4)
        if not parsed:
            msg = "conditions is empty; name at least one condition to predict"
            raise ValueError(msg)
        for name, condition in zip(conditions, parsed, strict=True):
            if condition:
                self._check_condition(str(name), condition)
        return parsed

    def _check_condition(self, name: str, condition: Condition) -> None:
        if self.setup.condition_type == "genetic":
            positions = GeneVocab.default().positions(list(condition))
            unknown = [g for g, p in zip(condition, positions, strict=True) if p < 0]
            if unknown:
                msg = (
                    f"condition {name!r} names gene(s) {unknown} that are not in the 19,264-gene "
                    "vocabulary; perturbations are represented by the genes' embeddings, which "
                    "exist for vocabulary genes only: check the HGNC symbol"
                )
                raise ValueError(msg)
        elif self._profiles().index(condition) is None:
            msg = (
                f"unknown treatment {name!r}; a treatment's embedding is learned from its "
                f"cells, and this model was trained on {self.training_conditions}"
            )
            raise ValueError(msg)

    # ------------------------------------------------------------------ control cells
    def _control_cells(self, adata: AnnData, cell_types: Sequence[str] | None) -> ControlCells:
        X, var_to_position = aligned_counts(adata, self.setup, self.genes, what="adata_ctrl")
        mask = np.ones(adata.n_obs, dtype=bool)
        key = self.setup.condition_key
        if key in adata.obs:
            mask = (adata.obs[key].astype(str) == self.setup.control).to_numpy()
            if not mask.any():
                msg = (
                    f"adata_ctrl has no control cells (obs[{key!r}] == {self.setup.control!r}); "
                    "predictions start from control cells"
                )
                raise ValueError(msg)
        if self.setup.cell_type_key is not None and self.setup.cell_type_key not in adata.obs:
            msg = (
                f"adata_ctrl lacks obs[{self.setup.cell_type_key!r}]: the model was set up with "
                "cell types, so each control cell needs its type"
            )
            raise ValueError(msg)
        types = cell_types_of(adata, self.setup)
        if cell_types is not None and self.setup.cell_type_key is None:
            msg = "cell_types= needs a model set up with cell_type_key; this one has none"
            raise ValueError(msg)
        if cell_types is not None:
            wanted = [str(t) for t in cell_types]
            lacking = sorted(set(wanted) - set(types[mask]))
            if lacking:
                msg = (
                    f"cell type(s) {lacking} have no control cells in adata_ctrl; a type's "
                    "response is predicted from its own control cells: add them, or predict "
                    "other types"
                )
                raise ValueError(msg)
            mask &= np.isin(types, wanted)
        rows = np.flatnonzero(mask)
        return ControlCells(
            X, var_to_position, self.genes, rows, types[rows], adata.obs_names[rows].to_numpy()
        )

    # ------------------------------------------------------------------ prediction
    def _shift(self, condition: Condition, cells: ControlCells) -> np.ndarray:
        """Shift of each control cell's profile ``(n_cells, n_genes)`` (or ``(n_genes,)``)."""
        raise NotImplementedError

    def predict(
        self,
        adata_ctrl: AnnData,
        conditions: Sequence[str],
        *,
        cell_types: Sequence[str] | None = None,
        aggregate: Aggregate = "cells",
    ) -> AnnData:
        """Predicted log-normalised expression of control cells under each condition.

        Parameters
        ----------
        adata_ctrl
            Raw counts with the training data's genes. If it has the condition column, only its
            control cells are used; otherwise every cell is taken as a control cell.
        conditions
            Condition names, e.g. ``["KLF1", "KLF1+MAP2K6"]`` or ``["stimulated"]``.
        cell_types
            Restrict to these cell types (each must have control cells in ``adata_ctrl``).
        aggregate
            ``"cells"``: one row per control cell and condition (each cell's profile plus its
            predicted shift; single values can be negative, their means are the prediction).
            ``"mean"``: one row per condition and cell type, the mean over its control cells.

        Returns
        -------
        AnnData
            ``X``: dense float32 values on the scale ``ln(1 + 1e4 * c / N)`` (``N``: the cell's
            total count over vocabulary genes), ``var_names``: the predicted genes.
            ``obs[condition_key]``: the condition as given; ``obs[cell_type_key]`` when set up
            with cell types; ``obs["control_cell"]`` (cells) or ``obs["n_cells"]`` (mean).
            ``uns["xtg_perturbation_prediction"]``: scale, method and aggregation.
        """
        if aggregate not in ("cells", "mean"):
            msg = f"aggregate must be 'cells' or 'mean', got {aggregate!r}"
            raise ValueError(msg)
        self._profiles()  # trained?
        parsed = self._check_conditions(conditions)
        cells = self._control_cells(adata_ctrl, cell_types)
        names = [str(n) for n in conditions]
        if aggregate == "mean":
            X, obs = self._predict_means(parsed, names, cells)
        else:
            X, obs = self._predict_cells(parsed, names, cells)
        out = AnnData(X=X, obs=obs, var=pd.DataFrame(index=self.var_names))
        out.uns[PREDICTION_KEY] = {
            "scale": SCALE, "method": self.method, "aggregate": aggregate,
            "setup": self.setup.to_dict(),
        }  # fmt: skip
        return out

    def _shift_or_zero(self, condition: Condition, cells: ControlCells) -> np.ndarray:
        if not condition:
            return np.zeros(len(self.genes.positions), dtype=np.float32)
        return np.asarray(self._shift(condition, cells), dtype=np.float32)

    def _predict_means(
        self, parsed: list[Condition], names: list[str], cells: ControlCells
    ) -> tuple[np.ndarray, pd.DataFrame]:
        types = cells.type_names
        control = cells.type_means()
        rows, records = [], []
        for condition, name in zip(parsed, names, strict=True):
            shift = self._shift_or_zero(condition, cells)
            for t, cell_type in enumerate(types):
                in_type = cells.cell_types == cell_type
                mean_shift = shift if shift.ndim == 1 else shift[in_type].mean(axis=0)
                rows.append(control[t] + mean_shift)
                records.append((name, cell_type, int(in_type.sum())))
        obs = self._obs(records, "n_cells")
        return np.asarray(rows, dtype=np.float32), obs

    def _predict_cells(
        self, parsed: list[Condition], names: list[str], cells: ControlCells
    ) -> tuple[np.ndarray, pd.DataFrame]:
        n_cells, n_genes = len(cells.rows), len(self.genes.positions)
        size = n_cells * len(parsed) * n_genes * 4
        if size > MAX_OUTPUT_BYTES:
            msg = (
                f"{n_cells} control cells x {len(parsed)} conditions x {n_genes} genes would "
                f"take {size / 1024**3:.1f} GB; pass aggregate='mean', fewer conditions, or "
                "a subset of the control cells"
            )
            raise ValueError(msg)
        base = cells.values().toarray().astype(np.float32)
        X = np.empty((n_cells * len(parsed), n_genes), dtype=np.float32)
        records = []
        for i, (condition, name) in enumerate(zip(parsed, names, strict=True)):
            X[i * n_cells : (i + 1) * n_cells] = base + self._shift_or_zero(condition, cells)
            records += [
                (name, t, c) for t, c in zip(cells.cell_types, cells.obs_names, strict=True)
            ]
        return X, self._obs(records, "control_cell")

    def _obs(self, records: list[tuple[str, str, Any]], last: str) -> pd.DataFrame:
        names, types, extra = zip(*records, strict=True) if records else ((), (), ())
        obs = pd.DataFrame({self.setup.condition_key: pd.Categorical(names)})
        if self.setup.cell_type_key is not None:
            obs[self.setup.cell_type_key] = pd.Categorical(types)
        obs[last] = list(extra)
        obs.index = pd.Index([f"pred_{i}" for i in range(len(obs))])
        return obs
