"""Pretraining at scale: streamed corpora, Lightning training (DDP), RDA, checkpoints, export.

The Lightning callbacks, the data module and the resume look-up are internals of
:func:`pretrain`; they live in the private modules of this package.
"""

from __future__ import annotations

from xtrimogene_sc.pretrain._config import (
    DataConfig,
    ModelSection,
    OptimConfig,
    PretrainConfig,
    RDAConfig,
    RunConfig,
)
from xtrimogene_sc.pretrain._export import export_pretrained, read_lightning_checkpoint
from xtrimogene_sc.pretrain._preprocess import preprocess_h5ad
from xtrimogene_sc.pretrain._rda import ReadDepthAugmentation
from xtrimogene_sc.pretrain._soma import SomaSource  # tiledbsoma is imported on first use
from xtrimogene_sc.pretrain._sources import CellSource, H5adDirectorySource, PreprocessedSource
from xtrimogene_sc.pretrain._stream import StreamingCellDataset
from xtrimogene_sc.pretrain._train import PretrainPlan, pretrain

__all__ = [
    "CellSource",
    "DataConfig",
    "H5adDirectorySource",
    "ModelSection",
    "OptimConfig",
    "PreprocessedSource",
    "PretrainConfig",
    "PretrainPlan",
    "RDAConfig",
    "ReadDepthAugmentation",
    "RunConfig",
    "SomaSource",
    "StreamingCellDataset",
    "export_pretrained",
    "pretrain",
    "preprocess_h5ad",
    "read_lightning_checkpoint",
]
