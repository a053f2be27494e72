from __future__ import annotations

from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.module._config import PRESETS, XTrimoGeneConfig
from xtrimogene_sc.module._module import EncoderOutput, PretrainOutput, XTrimoGeneModule
from xtrimogene_sc.module._objective_config import PretrainingObjective

__all__ = [
    "PRESETS",
    "EncoderOutput",
    "PretrainOutput",
    "PretrainingObjective",
    "SparseCells",
    "XTrimoGeneConfig",
    "XTrimoGeneModule",
]
