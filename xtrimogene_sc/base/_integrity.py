"""Checksums of a saved model: the weights file and the configuration, verified on load.

:func:`~xtrimogene_sc.base._saved.save_checked` records, inside ``config.json``::

    "integrity": {"algorithm": "sha256",
                  "config": <sha256 of the canonical JSON of everything else in config.json>,
                  "files": {"model.safetensors": <sha256 of the file's bytes>}}

The configuration hash is taken over a canonical serialisation (sorted keys, no whitespace) of
the parsed JSON without the ``integrity`` entry, so re-indenting the file changes nothing but any
edited value (e.g. another head count with the same weight shapes) is caught. ``vocab.tsv`` needs
no checksum: it is compared gene by gene with the package's vocabulary on every load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from xtrimogene_sc.base._errors import CheckpointError

INTEGRITY_KEY = "integrity"
ALGORITHM = "sha256"
_FIX = (
    "Restore the directory from a copy, or save the model again; a model directory must not be "
    "edited by hand"
)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks (about 0.8 GB/s on one CPU core)."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, ALGORITHM).hexdigest()


def config_sha256(meta: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of ``meta`` without its ``integrity`` entry."""
    body = {k: v for k, v in meta.items() if k != INTEGRITY_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def integrity_record(meta: Mapping[str, Any], files: Mapping[str, Path]) -> dict[str, Any]:
    """The ``integrity`` entry for ``meta`` (already JSON round-tripped) and the named files."""
    return {
        "algorithm": ALGORITHM,
        "config": config_sha256(meta),
        "files": {name: file_sha256(path) for name, path in sorted(files.items())},
    }


def verify_config(meta: Mapping[str, Any], config_path: Path) -> dict[str, str]:
    """Check the configuration hash; return the recorded file hashes to check with the files."""
    record = meta.get(INTEGRITY_KEY)
    if not isinstance(record, dict) or record.get("algorithm") != ALGORITHM:
        msg = (
            f"{config_path} has no valid checksum record (its 'integrity' entry is missing or "
            f"damaged), so the model cannot be verified. {_FIX}"
        )
        raise CheckpointError(msg)
    if record.get("config") != config_sha256(meta):
        msg = (
            f"{config_path} was modified after the model was saved: its settings no longer match "
            "the checksum recorded at save time, so the weights could be read with another "
            f"architecture (e.g. another head count). {_FIX}"
        )
        raise CheckpointError(msg)
    return dict(record.get("files", {}))


def verify_file(path: Path, expected: str | None) -> None:
    """Refuse ``path`` unless its SHA-256 equals the one recorded at save time."""
    if expected is None:
        msg = f"{path}: no checksum was recorded for this file at save time. {_FIX}"
        raise CheckpointError(msg)
    found = file_sha256(path)
    if found != expected:
        msg = (
            f"{path} is corrupted or was modified after the model was saved (sha256 "
            f"{found[:12]}…, recorded {expected[:12]}…); nothing was loaded. {_FIX}"
        )
        raise CheckpointError(msg)


def check_finite(state: dict[str, torch.Tensor], *, source: str) -> None:
    """Refuse weights holding NaN or infinity, naming the tensor.

    Such weights load without complaint and then embed every cell as NaN.
    """
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            msg = (
                f"{source}: weight {name!r} holds {bad} NaN or infinite value(s) of "
                f"{tensor.numel()}; the checkpoint is damaged or came from a diverged run, so "
                "nothing was loaded"
            )
            raise CheckpointError(msg)
