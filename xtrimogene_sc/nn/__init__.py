from __future__ import annotations

from xtrimogene_sc.nn._blocks import DecoderBlock, EncoderBlock, ExactKernel, MultiHeadAttention
from xtrimogene_sc.nn._embedding import AutoDiscretizationEmbedding
from xtrimogene_sc.nn._favor import FavorKernel, linear_attention, softmax_features
from xtrimogene_sc.nn._masking import pack_rows, sample_masks, sort_entries

__all__ = [
    "AutoDiscretizationEmbedding",
    "DecoderBlock",
    "EncoderBlock",
    "ExactKernel",
    "FavorKernel",
    "MultiHeadAttention",
    "linear_attention",
    "pack_rows",
    "sample_masks",
    "softmax_features",
    "sort_entries",
]
