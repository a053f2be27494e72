from __future__ import annotations

from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.module._config import PRESETS, XTrimoGeneConfig
from xtrimogene_sc.module._module import EncoderOutput, PretrainOutput, XTrimoGeneModule
from xtrimogene_sc.module._perturbation import PerturbationHead, PerturbationModule

__all__ = [
    "PRESETS",
    "EncoderOutput",
    "PerturbationHead",
    "PerturbationModule",
    "PretrainOutput",
    "SparseCells",
    "XTrimoGeneConfig",
    "XTrimoGeneModule",
]
