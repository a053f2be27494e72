"""Fixed vocabulary geometry and default AnnData keys.

The model works on a fixed vocabulary of 19,264 genes. Two read-depth tokens follow the genes:
T (target depth) at position 19264 and S (source depth) at position 19265. Padding uses a dedicated
row of the gene-embedding table so that it never collides with a real gene.
"""

from __future__ import annotations

from typing import NamedTuple


class _Tokens(NamedTuple):
    N_GENES: int = 19264
    T_POS: int = 19264
    S_POS: int = 19265
    SEQ_LEN: int = 19266  # genes + T + S
    PAD_POS: int = 19266
    N_POSITIONS: int = 19267  # rows of the gene/position embedding table


class _RegistryKeys(NamedTuple):
    X_KEY: str = "X"
    BATCH_KEY: str = "batch"
    LABELS_KEY: str = "labels"


class _DefaultKeys(NamedTuple):
    LATENT: str = "X_xtg"
    UNS: str = "xtg"
    LABEL: str = "xtg_label"
    LABEL_CONFIDENCE: str = "xtg_label_confidence"
    LABEL_PROBS: str = "xtg_label_probabilities"


TOKENS = _Tokens()
REGISTRY_KEYS = _RegistryKeys()
DEFAULT_KEYS = _DefaultKeys()
