"""The model shells: the pretrained backbone, its training recipe, and the task models.

The classifier and the perturbation model live in their task packages
(:mod:`xtrimogene_sc.annotation`, :mod:`xtrimogene_sc.perturbation`) and are re-exported here on
first use, so that package can build on this one without an import circle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xtrimogene_sc._lazy import lazy_names
from xtrimogene_sc.base._errors import CheckpointError
from xtrimogene_sc.model._budget import token_budget
from xtrimogene_sc.model._model import XTrimoGene, load_query_data
from xtrimogene_sc.model._recipe import SMALL_DATA_RECIPE, TrainingRecipe

if TYPE_CHECKING:
    from xtrimogene_sc.annotation import XTrimoGeneClassifier
    from xtrimogene_sc.perturbation import PerturbationBaseline, XTrimoGenePerturbation

_TASK_EXPORTS = {
    "XTrimoGeneClassifier": "xtrimogene_sc.annotation",
    "PerturbationBaseline": "xtrimogene_sc.perturbation",
    "XTrimoGenePerturbation": "xtrimogene_sc.perturbation",
}

__all__ = [
    "SMALL_DATA_RECIPE",
    "CheckpointError",
    "PerturbationBaseline",
    "TrainingRecipe",
    "XTrimoGene",
    "XTrimoGeneClassifier",
    "XTrimoGenePerturbation",
    "load_query_data",
    "token_budget",
]


__getattr__, __dir__ = lazy_names(__name__, _TASK_EXPORTS)
