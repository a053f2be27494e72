from __future__ import annotations

from xtrimogene_sc.perturbation._plot import perturbation_response
from xtrimogene_sc.pl._plots import confusion_matrix, training_curves, umap_annotation

__all__ = ["confusion_matrix", "perturbation_response", "training_curves", "umap_annotation"]
