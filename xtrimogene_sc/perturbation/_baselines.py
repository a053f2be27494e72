"""Simple perturbation baselines that match or beat deep models (Ahlmann-Eltze et al. 2025).

All work on the group means of the training data (log-normalised, per condition and cell type)
and predict a shift added to each control cell's profile:

* ``"no_change"``: no shift, i.e. the control profile.
* ``"mean_shift"``: the mean response over every perturbed training group.
* ``"additive"``: the sum of the responses to each component measured alone (for a treatment,
  its mean training response).
* ``"linear"``: a linear model on a PCA of the training data. Genetic conditions follow
  Ahlmann-Eltze et al.: ``Y ~ G W P^T + b`` with ``Y`` the training responses (genes x
  conditions), ``b`` their row means, ``G`` the top principal components of ``Y`` (gene
  loadings) and ``P`` each condition's perturbed genes' rows of ``G`` (summed over a
  combination), ``W`` by ridge regression. Treatments regress each type's response on its
  control cells' mean coordinates in a PCA of the training control cells.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy.sparse.linalg import LinearOperator, svds

from xtrimogene_sc.perturbation._predictor import ControlCells, PerturbationPredictor
from xtrimogene_sc.perturbation._setup import (
    Condition,
    aligned_counts,
    compute_profiles,
    iter_lognorm,
    read_setup,
)

if TYPE_CHECKING:
    import scipy.sparse as sp
    from anndata import AnnData

BaselineMethod = Literal["no_change", "mean_shift", "additive", "linear"]
METHODS: tuple[str, ...] = ("no_change", "mean_shift", "additive", "linear")


class PerturbationBaseline(PerturbationPredictor):
    """A simple perturbation predictor with the API of the model.

    Parameters
    ----------
    adata
        Training AnnData registered with
        :meth:`XTrimoGenePerturbation.setup_anndata <xtrimogene_sc.XTrimoGenePerturbation.setup_anndata>`.
    method
        ``"no_change"``, ``"mean_shift"``, ``"additive"`` or ``"linear"`` (see the module notes).
    n_components
        Principal components of the linear baseline.
    ridge
        Ridge penalty of the linear baseline (Ahlmann-Eltze et al. use 0.1).

    Examples
    --------
    >>> baseline = xtg.model.PerturbationBaseline(adata, method="additive")  # doctest: +SKIP
    >>> baseline.train()  # doctest: +SKIP
    >>> pred = baseline.predict(adata_ctrl, conditions=["KLF1+MAP2K6"])  # doctest: +SKIP
    """

    def __init__(
        self,
        adata: AnnData,
        *,
        method: BaselineMethod = "additive",
        n_components: int = 10,
        ridge: float = 0.1,
    ) -> None:
        if method not in METHODS:
            msg = f"method must be one of {METHODS}, got {method!r}"
            raise ValueError(msg)
        read_setup(adata)
        super().__init__(adata)
        self.method = method
        self.n_components = n_components
        self.ridge = ridge
        self._single: dict[Condition, np.ndarray] = {}
        self._mean_response = np.zeros(0)
        self._linear: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        state = "trained" if self.profiles_ is not None else "not trained"
        return (
            f"PerturbationBaseline(method={self.method!r}, {len(self.genes.names)} genes, {state})"
        )

    def train(self) -> None:
        """Compute the training group means (and fit the linear model)."""
        profiles = compute_profiles(self.adata, self.setup, self.genes)
        if not profiles.conditions:
            msg = "the training data has no perturbed cells: nothing to learn a response from"
            raise ValueError(msg)
        self.profiles_ = profiles
        response = profiles.response  # (conditions, types, genes), NaN where unobserved
        groups = profiles.observed_groups()
        self._mean_response = np.mean([response[i, t] for i, t in groups], axis=0)
        per_condition = np.nanmean(response, axis=1)  # mean over the types that have it
        self._single = {c: per_condition[i] for i, c in enumerate(profiles.conditions)}
        if self.method == "linear":
            if self.setup.condition_type == "genetic":
                self._fit_linear_genetic(per_condition)
            else:
                self._fit_linear_treatment()

    # ------------------------------------------------------------------ checks
    def _check_condition(self, name: str, condition: Condition) -> None:
        super()._check_condition(name, condition)
        profiles = self._profiles()
        if self.method == "additive":
            unseen = [c for c in condition if profiles.index((c,)) is None]
            if unseen:
                msg = (
                    f"the additive baseline sums responses measured alone, but {unseen} "
                    f"(in {name!r}) were never perturbed alone in training; use "
                    "method='mean_shift' or 'linear' for unseen perturbations"
                )
                raise ValueError(msg)
        if self.method == "linear" and self.setup.condition_type == "genetic":
            unmeasured = [g for g in condition if g not in set(self.genes.names)]
            if unmeasured:
                msg = (
                    f"the linear baseline embeds a perturbed gene by its own row of the PCA "
                    f"loadings, but {unmeasured} (in {name!r}) are not measured genes of the "
                    "training data: they add nothing, so an unmeasured gene alone is predicted "
                    "as the mean training response"
                )
                warnings.warn(msg, UserWarning, stacklevel=4)

    # ------------------------------------------------------------------ shifts
    def _shift(self, condition: Condition, cells: ControlCells) -> np.ndarray:
        if self.method == "no_change":
            return np.zeros(len(self.genes.positions))
        if self.method == "mean_shift":
            return self._mean_response
        if self.method == "additive":
            return np.sum([self._single[(c,)] for c in condition], axis=0)
        if self.setup.condition_type == "genetic":
            return self._linear_genetic(condition)
        return self._linear_treatment(condition, cells)

    # ------------------------------------------------------------------ linear, genetic
    def _fit_linear_genetic(self, per_condition: np.ndarray) -> None:
        profiles = self._profiles()
        Y = per_condition.T  # genes x conditions
        b = Y.mean(axis=1)
        k = max(1, min(self.n_components, Y.shape[1] - 1, Y.shape[0] - 1))
        left, _, _ = np.linalg.svd(Y - b[:, None], full_matrices=False)
        G = left[:, :k]  # gene loadings (genes x k)
        P = np.stack([self._gene_rows(G, c) for c in profiles.conditions])  # conditions x k
        ridge = self.ridge * np.eye(k)
        W = np.linalg.solve(G.T @ G + ridge, G.T @ (Y - b[:, None]) @ P)
        W = W @ np.linalg.inv(P.T @ P + ridge)
        self._linear = {"G": G, "W": W, "b": b}

    def _gene_rows(self, G: np.ndarray, condition: Condition) -> np.ndarray:
        """Sum of the loadings rows of the perturbed genes; a gene not measured has none (0).

        Training conditions of unmeasured genes so get a zero row, which leaves them out of
        the fit of ``W`` (they still count in the mean response ``b``).
        """
        index = {g: i for i, g in enumerate(self.genes.names)}
        rows = [G[index[g]] for g in condition if g in index]
        return np.sum(rows, axis=0) if rows else np.zeros(G.shape[1])

    def _linear_genetic(self, condition: Condition) -> np.ndarray:
        G, W, b = self._linear["G"], self._linear["W"], self._linear["b"]
        return G @ W @ self._gene_rows(G, condition) + b

    # ------------------------------------------------------------------ linear, treatment
    def _fit_linear_treatment(self) -> None:
        profiles = self._profiles()
        X, var_to_position = aligned_counts(self.adata, self.setup, self.genes)
        names = self.adata.obs[self.setup.condition_key].astype(str).to_numpy()
        rows = np.flatnonzero(names == self.setup.control)
        values = _stack(iter_lognorm(X, var_to_position, self.genes, rows))
        mean, loadings = sparse_pca(values, self.n_components)
        coordinates = (profiles.control - mean) @ loadings  # types x k
        self._linear = {"mean": mean, "loadings": loadings}
        ridge = self.ridge * np.eye(loadings.shape[1])
        for i, condition in enumerate(profiles.conditions):
            seen = np.flatnonzero(profiles.n_cells[i] > 0)
            Y = profiles.response[i, seen].T  # genes x types
            b = Y.mean(axis=1)
            P = coordinates[seen] - coordinates[seen].mean(axis=0)
            W = (Y - b[:, None]) @ P @ np.linalg.inv(P.T @ P + ridge)
            self._linear[f"W:{condition[0]}"] = W
            self._linear[f"b:{condition[0]}"] = b
            self._linear[f"center:{condition[0]}"] = coordinates[seen].mean(axis=0)

    def _linear_treatment(self, condition: Condition, cells: ControlCells) -> np.ndarray:
        name = condition[0]
        W, b = self._linear[f"W:{name}"], self._linear[f"b:{name}"]
        means = cells.type_means()
        coordinates = (means - self._linear["mean"]) @ self._linear["loadings"]
        per_type = (coordinates - self._linear[f"center:{name}"]) @ W.T + b  # types x genes
        index = {t: i for i, t in enumerate(cells.type_names)}
        return per_type[[index[t] for t in cells.cell_types]]


def _stack(pieces) -> sp.csr_matrix:
    import scipy.sparse as sp

    return sp.vstack([values for _, values in pieces]).tocsr()


def sparse_pca(values: sp.csr_matrix, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top principal axes ``(genes, k)`` of sparse rows, centred implicitly.

    The centred matrix is never formed: it is applied through a linear operator.
    """
    n, d = values.shape
    mean = np.asarray(values.mean(axis=0)).ravel()
    k = max(1, min(n_components, n - 1, d - 1))

    def matvec(v: np.ndarray) -> np.ndarray:
        v = np.ravel(v)
        return values @ v - mean @ v

    def rmatvec(u: np.ndarray) -> np.ndarray:
        u = np.ravel(u)
        return values.T @ u - mean * u.sum()

    operator = LinearOperator((n, d), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    _, singular, vt = svds(operator, k=k, random_state=0)
    order = np.argsort(singular)[::-1]
    return mean, vt[order].T
