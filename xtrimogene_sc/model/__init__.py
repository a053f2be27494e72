from __future__ import annotations

from xtrimogene_sc.model._classifier import XTrimoGeneClassifier
from xtrimogene_sc.model._model import XTrimoGene
from xtrimogene_sc.model._perturbation import XTrimoGenePerturbation
from xtrimogene_sc.model._perturbation_baselines import PerturbationBaseline
from xtrimogene_sc.model._query import QueryMappingMixin, load_query_data

__all__ = [
    "PerturbationBaseline",
    "QueryMappingMixin",
    "XTrimoGene",
    "XTrimoGeneClassifier",
    "XTrimoGenePerturbation",
    "load_query_data",
]
