"""Cell-type annotation by fine-tuning: the classifier, its head and its training loop.

:class:`XTrimoGeneClassifier` fine-tunes the last encoder layers of a trained backbone with an
MLP head on labelled cells. ``xtg.tl.annotate`` uses it (or a kNN on the embedding) to label new
cells; ``xtg.model`` re-exports the class.
"""

from __future__ import annotations

from xtrimogene_sc.annotation._head import ClassifierModule
from xtrimogene_sc.annotation._model import XTrimoGeneClassifier

__all__ = ["ClassifierModule", "XTrimoGeneClassifier"]
