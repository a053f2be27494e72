"""Temperature scaling: calibrated class probabilities from any classifier's logits.

Used by the label-transfer probes (:mod:`xtrimogene_sc.tl`) and the fine-tuned classifier
(:mod:`xtrimogene_sc.model`). Temperature scaling has a single parameter (robust with the few
held-out cells of a rare cell type) and never changes which class wins, so accuracy is untouched
and only confidences move.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def calibration_split(
    y: np.ndarray, fraction: float, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit, held-out) indices; every class keeps at least one cell in the fit part."""
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_out = min(len(members) - 1, int(round(fraction * len(members))))
        held_out.append(members[:n_out])
    cal = np.sort(np.concatenate(held_out)) if held_out else np.array([], dtype=np.int64)
    fit = np.setdiff1d(np.arange(len(y)), cal)
    return fit, cal


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising the mean negative log-likelihood of ``y`` under ``logits / T``."""
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[rows, y].mean())

    result = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded")
    return float(np.exp(result.x))


def expected_calibration_error(
    probabilities: np.ndarray, y_true: np.ndarray, *, n_bins: int = 15
) -> float:
    """Top-label ECE: confidence-vs-accuracy gap averaged over equal-width confidence bins.

    Parameters
    ----------
    probabilities
        ``(n_cells, n_classes)`` predicted probabilities.
    y_true
        Integer index of the true class of every cell (``-1`` for a class the model does not
        know: always counted as wrong).
    n_bins
        Number of confidence bins on ``[0, 1]``.
    """
    probabilities = np.asarray(probabilities)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)
