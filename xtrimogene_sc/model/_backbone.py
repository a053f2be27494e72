"""The trained backbone a task model is built on: a model, its torch module, or a saved folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from xtrimogene_sc.module._module import XTrimoGeneModule

if TYPE_CHECKING:
    from xtrimogene_sc.model._model import XTrimoGene


def load_backbone(backbone: XTrimoGene | str | Path) -> XTrimoGene:
    """The backbone as a model: given, or loaded with :meth:`XTrimoGene.load`.

    Raises
    ------
    TypeError
        ``backbone`` is neither an :class:`~xtrimogene_sc.XTrimoGene` nor a path.
    """
    from xtrimogene_sc.model._model import XTrimoGene

    if isinstance(backbone, str | Path):
        return XTrimoGene.load(backbone)
    if not isinstance(backbone, XTrimoGene):
        msg = (
            "backbone must be a trained XTrimoGene model or the path of a saved one, got "
            f"{type(backbone).__name__}"
        )
        raise TypeError(msg)
    return backbone


def backbone_module(backbone: XTrimoGene | XTrimoGeneModule | str | Path) -> XTrimoGeneModule:
    """The backbone's torch module, from a model, a module or a saved folder."""
    if isinstance(backbone, XTrimoGeneModule):
        return backbone
    return load_backbone(backbone).module
