"""xtrimogene_sc: the xTrimoGene / scFoundation single-cell foundation model for scverse."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from xtrimogene_sc import datasets, drugcomb, pl, pp, tl
from xtrimogene_sc.data import GeneVocab
from xtrimogene_sc.drugcomb import DrugCombinationModel
from xtrimogene_sc.model import XTrimoGene, XTrimoGenePerturbation
from xtrimogene_sc.module import XTrimoGeneConfig

try:
    __version__ = version("xtrimogene-sc")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "DrugCombinationModel",
    "GeneVocab",
    "XTrimoGene",
    "XTrimoGeneConfig",
    "XTrimoGenePerturbation",
    "__version__",
    "datasets",
    "drugcomb",
    "pl",
    "pp",
    "tl",
]
