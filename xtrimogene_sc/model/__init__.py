from __future__ import annotations

from xtrimogene_sc.model._budget import token_budget
from xtrimogene_sc.model._classifier import XTrimoGeneClassifier
from xtrimogene_sc.model._model import XTrimoGene, load_query_data
from xtrimogene_sc.model._query import QueryMappingMixin
from xtrimogene_sc.model._recipe import SMALL_DATA_RECIPE, TrainingRecipe
from xtrimogene_sc.model._scfoundation import CheckpointError

__all__ = [
    "SMALL_DATA_RECIPE",
    "CheckpointError",
    "QueryMappingMixin",
    "TrainingRecipe",
    "XTrimoGene",
    "XTrimoGeneClassifier",
    "load_query_data",
    "token_budget",
]
