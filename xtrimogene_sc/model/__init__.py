"""The model shells: the pretrained backbone, its training recipe, and the task models.

The classifier and the perturbation model live in their task packages
(:mod:`xtrimogene_sc.annotation`, :mod:`xtrimogene_sc.perturbation`) and are re-exported here on
first use, so that package can build on this one without an import circle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    """Import a task model from its package the first time it is asked for."""
    if name not in _TASK_EXPORTS:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(_TASK_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_TASK_EXPORTS})
