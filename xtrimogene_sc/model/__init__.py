from __future__ import annotations

from xtrimogene_sc.model._model import XTrimoGene

__all__ = ["XTrimoGene"]
