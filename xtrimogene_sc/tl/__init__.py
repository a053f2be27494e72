from __future__ import annotations

from xtrimogene_sc.perturbation._metrics import perturbation_metrics
from xtrimogene_sc.tl._annotate import annotate, check_gene_overlap
from xtrimogene_sc.tl._embed import embed
from xtrimogene_sc.tl._embed_file import embed_h5ad
from xtrimogene_sc.tl._integration import score_integration
from xtrimogene_sc.tl._probe import EmbeddingProbe
from xtrimogene_sc.tl._scores import score_embedding
from xtrimogene_sc.train._calibration import expected_calibration_error

__all__ = [
    "EmbeddingProbe",
    "annotate",
    "check_gene_overlap",
    "embed",
    "embed_h5ad",
    "expected_calibration_error",
    "perturbation_metrics",
    "score_embedding",
    "score_integration",
]
