from __future__ import annotations

from xtrimogene_sc.base._errors import CheckpointError
from xtrimogene_sc.model._budget import token_budget
from xtrimogene_sc.model._classifier import XTrimoGeneClassifier
from xtrimogene_sc.model._model import XTrimoGene, load_query_data
from xtrimogene_sc.model._perturbation import XTrimoGenePerturbation
from xtrimogene_sc.model._perturbation_baselines import PerturbationBaseline
from xtrimogene_sc.model._recipe import SMALL_DATA_RECIPE, TrainingRecipe

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
