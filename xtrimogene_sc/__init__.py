"""xtrimogene_sc: the xTrimoGene / scFoundation single-cell foundation model for scverse.

Submodules and the exported classes load on first use (PEP 562), so ``import xtrimogene_sc``
and the ``xtrimogene-sc`` command's argument parsing do not pay for torch, anndata and
scvi-tools until something needs them; ``xtg.XTrimoGene``, ``xtg.tl`` and ``from xtrimogene_sc
import XTrimoGene`` work as they always did.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from xtrimogene_sc._lazy import lazy_names

if TYPE_CHECKING:
    from xtrimogene_sc import datasets, drugcomb, pl, pp, tl
    from xtrimogene_sc.annotation import XTrimoGeneClassifier
    from xtrimogene_sc.data import GeneVocab
    from xtrimogene_sc.drugcomb import DrugCombinationModel
    from xtrimogene_sc.model import SMALL_DATA_RECIPE, TrainingRecipe, XTrimoGene
    from xtrimogene_sc.module import XTrimoGeneConfig
    from xtrimogene_sc.perturbation import PerturbationBaseline, XTrimoGenePerturbation

try:
    __version__ = version("xtrimogene-sc")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

# public subpackages, reachable as attributes of the package once asked for
_SUBPACKAGES = frozenset(
    [
        "annotation",
        "data",
        "datasets",
        "drugcomb",
        "model",
        "module",
        "nn",
        "perturbation",
        "pl",
        "pp",
        "pretrain",
        "tl",
        "train",
    ]
)
# exported names and the subpackage that defines each
_EXPORTS = {
    "DrugCombinationModel": "drugcomb",
    "GeneVocab": "data",
    "PerturbationBaseline": "perturbation",
    "SMALL_DATA_RECIPE": "model",
    "TrainingRecipe": "model",
    "XTrimoGene": "model",
    "XTrimoGeneClassifier": "annotation",
    "XTrimoGeneConfig": "module",
    "XTrimoGenePerturbation": "perturbation",
}

__all__ = [
    "DrugCombinationModel",
    "GeneVocab",
    "PerturbationBaseline",
    "SMALL_DATA_RECIPE",
    "TrainingRecipe",
    "XTrimoGene",
    "XTrimoGeneClassifier",
    "XTrimoGeneConfig",
    "XTrimoGenePerturbation",
    "__version__",
    "datasets",
    "drugcomb",
    "pl",
    "pp",
    "tl",
]


__getattr__, __dir__ = lazy_names(
    __name__,
    {
        **{name: f"{__name__}.{name}" for name in _SUBPACKAGES},
        **{name: f"{__name__}.{sub}" for name, sub in _EXPORTS.items()},
    },
)
