from __future__ import annotations

from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.module._config import PRESETS, XTrimoGeneConfig
from xtrimogene_sc.module._module import EncoderOutput, PretrainOutput, XTrimoGeneModule

__all__ = [
    "PRESETS",
    "EncoderOutput",
    "PretrainOutput",
    "SparseCells",
    "XTrimoGeneConfig",
    "XTrimoGeneModule",
]
