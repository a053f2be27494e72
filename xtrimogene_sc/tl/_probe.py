"""Calibrated label-transfer probes on cell embeddings (kNN votes, logistic regression).

Both probes return class probabilities calibrated by **temperature scaling** fitted on a held-out,
stratified part of the reference: the probe is fitted on the rest, one temperature ``T`` is chosen
to minimise the negative log-likelihood of the held-out labels, and the probe is then refitted on
the whole reference with that ``T``. Why temperature scaling rather than isotonic or Platt
calibration: it has a single parameter (robust with the few held-out cells of a rare cell type),
it never changes which class wins (so accuracy is untouched and only confidences move), and it
applies to the kNN probe and to the logistic probe alike.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from scipy.special import softmax

from xtrimogene_sc.train._calibration import (
    calibration_split,
    fit_temperature,
)

logger = logging.getLogger(__name__)

ProbeMethod = Literal["knn", "logreg"]
_KNN_SMOOTHING = 0.1  # pseudo-votes per class: no class gets probability exactly 0
_MIN_CALIBRATION_CELLS = 10


class EmbeddingProbe:
    """Classifier on cell embeddings with temperature-calibrated probabilities.

    Parameters
    ----------
    method
        ``"knn"``: distance-weighted votes of the ``n_neighbors`` nearest reference cells
        (Gaussian weights with a per-cell bandwidth equal to the distance of the farthest
        neighbour), in standardised embedding space. ``"logreg"``: multinomial L2 logistic
        regression on standardised embeddings.
    n_neighbors
        Neighbours for ``"knn"``.
    C
        Inverse regularisation strength for ``"logreg"``.
    calibrate
        Fit a temperature on a held-out part of the reference (else ``T = 1``).
    calibration_fraction
        Share of each class held out for the temperature fit (classes of one cell are never held
        out).
    seed
        Seed of the calibration split.
    """

    def __init__(
        self,
        method: ProbeMethod = "knn",
        *,
        n_neighbors: int = 15,
        C: float = 1.0,
        calibrate: bool = True,
        calibration_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        if method not in ("knn", "logreg"):
            msg = f"method must be 'knn' or 'logreg', got {method!r}"
            raise ValueError(msg)
        if n_neighbors < 1:
            msg = f"n_neighbors must be >= 1, got {n_neighbors}"
            raise ValueError(msg)
        self.method = method
        self.n_neighbors = n_neighbors
        self.C = C
        self.calibrate = calibrate
        self.calibration_fraction = calibration_fraction
        self.seed = seed
        self.temperature_ = 1.0
        self.calibrated_ = False

    def fit(self, X: np.ndarray, labels: np.ndarray) -> EmbeddingProbe:
        """Fit on reference embeddings ``X`` (cells x d) and their string labels."""
        labels = np.asarray(labels).astype(str)
        self.classes_, y = np.unique(labels, return_inverse=True)
        if self.calibrate:
            fit_idx, cal_idx = calibration_split(y, self.calibration_fraction, seed=self.seed)
            if len(cal_idx) >= _MIN_CALIBRATION_CELLS and len(np.unique(y[fit_idx])) >= 2:
                self._fit(X[fit_idx], y[fit_idx])
                self.temperature_ = fit_temperature(self._logits(X[cal_idx]), y[cal_idx])
                self.calibrated_ = True
            else:
                logger.info("too few reference cells to hold out for calibration; T = 1")
        self._fit(X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities ``(n_cells, n_classes)`` in the order of ``classes_``."""
        return softmax(self._logits(X) / self.temperature_, axis=1)

    # ------------------------------------------------------------------ internals
    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        from sklearn.preprocessing import StandardScaler

        self._n_classes = len(self.classes_)
        self._scaler = StandardScaler().fit(X)
        Z = self._scaler.transform(X)
        if self.method == "knn":
            from sklearn.neighbors import NearestNeighbors

            self._k = min(self.n_neighbors, len(Z))
            self._index = NearestNeighbors(n_neighbors=self._k).fit(Z)
            self._y = y
        else:
            from sklearn.linear_model import LogisticRegression

            self._present = np.unique(y)
            self._logreg = LogisticRegression(C=self.C, max_iter=2000).fit(Z, y)

    def _logits(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated log-probabilities ``(n_cells, n_classes)``."""
        Z = self._scaler.transform(X)
        if self.method == "knn":
            return np.log(self._vote_shares(Z))
        logits = np.full((len(Z), self._n_classes), -1e4)
        scores = self._logreg.decision_function(Z)
        if scores.ndim == 1:  # two classes: sklearn returns the logit of the second
            scores = np.stack([np.zeros_like(scores), scores], axis=1)
        logits[:, self._present] = scores
        return logits

    def _vote_shares(self, Z: np.ndarray) -> np.ndarray:
        distances, neighbours = self._index.kneighbors(Z)
        bandwidth = np.maximum(distances[:, -1:], 1e-12)
        weights = np.exp(-((distances / bandwidth) ** 2))
        votes = np.zeros((len(Z), self._n_classes))
        np.add.at(votes, (np.arange(len(Z))[:, None], self._y[neighbours]), weights)
        votes /= votes.sum(axis=1, keepdims=True)
        smoothing = _KNN_SMOOTHING / self._k
        return (votes + smoothing) / (1.0 + smoothing * self._n_classes)
