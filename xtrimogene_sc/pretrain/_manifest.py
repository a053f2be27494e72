"""The manifest of a preprocessed corpus: format, vocabulary, parameters, shards and inputs.

Shared by the writer (:mod:`._preprocess`) and the reader (:class:`._sources.PreprocessedSource`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data._vocab import GeneVocab

FORMAT_NAME = "xtrimogene-sc-corpus"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_TMP = ".tmp-"


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Load and check the manifest of a preprocessed corpus."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        msg = f"{directory} has no {MANIFEST}; create the corpus with preprocess_h5ad(...)."
        raise FileNotFoundError(msg)
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT_NAME or manifest.get("format_version") != FORMAT_VERSION:
        msg = (
            f"{path}: format {manifest.get('format')!r} version {manifest.get('format_version')!r} "
            f"is not {FORMAT_NAME!r} version {FORMAT_VERSION}; preprocess the inputs again."
        )
        raise ValueError(msg)
    if manifest.get("vocab_sha256") != GeneVocab.default().sha256:
        msg = f"{path}: written for a different gene vocabulary; preprocess the inputs again."
        raise ValueError(msg)
    return manifest


def new_manifest(**params: Any) -> dict[str, Any]:
    """An empty manifest carrying the preprocessing parameters."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "vocab_sha256": GeneVocab.default().sha256,
        "n_genes": TOKENS.N_GENES,
        "params": params,
        "complete": False,
        "n_cells": 0,
        "nnz": 0,
        "shards": [],
        "inputs": {},
    }


def write_manifest(directory: str | os.PathLike, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (temporary file, then rename), updating the totals."""
    manifest["n_cells"] = sum(int(s["n_cells"]) for s in manifest["shards"])
    manifest["nnz"] = sum(int(s["nnz"]) for s in manifest["shards"])
    tmp = Path(directory) / f"{_TMP}{MANIFEST}"
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, Path(directory) / MANIFEST)
