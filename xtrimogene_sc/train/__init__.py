from __future__ import annotations

from xtrimogene_sc.train._plan import XTrimoGeneTrainingPlan, warmup_cosine

__all__ = ["XTrimoGeneTrainingPlan", "warmup_cosine"]
