"""Perturbation-response prediction in one folder: set-up, model, head, training, baselines.

Metrics and the plot live here too. :class:`XTrimoGenePerturbation` predicts the expression of control cells under genetic
perturbations or treatments from a trained backbone; :class:`PerturbationBaseline` gives the
simple baselines on the same interface; :func:`perturbation_metrics` scores either against
observed cells, and :func:`perturbation_response` plots them. ``xtg.model``, ``xtg.tl`` and
``xtg.pl`` re-export the user-facing names.
"""

from __future__ import annotations

from xtrimogene_sc.perturbation._baselines import PerturbationBaseline
from xtrimogene_sc.perturbation._head import PerturbationHead, PerturbationModule
from xtrimogene_sc.perturbation._metrics import perturbation_metrics
from xtrimogene_sc.perturbation._model import XTrimoGenePerturbation
from xtrimogene_sc.perturbation._plot import perturbation_response

__all__ = [
    "PerturbationBaseline",
    "PerturbationHead",
    "PerturbationModule",
    "XTrimoGenePerturbation",
    "perturbation_metrics",
    "perturbation_response",
]
