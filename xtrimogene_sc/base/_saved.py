"""Saved models of every kind: one checksummed, pickle-free directory format, one loader.

A saved model is a directory with ``config.json`` (the settings, the model's ``kind``, the
format version and the checksums) and ``model.safetensors`` (the weights), plus any files the
model adds. The pretrained model, the classifier, the perturbation model and the drug-combination
model all save and load through :func:`save_checked` and :func:`load_checked`, so each one is
atomic, checksummed, refuses a folder of another kind by naming the class that reads it, and
reads the checksum-free folders of format 1 with a warning.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from xtrimogene_sc.base._atomic import (
    CONFIG_FILE,
    FILES_KEY,
    WEIGHTS_FILE,
    save_files_atomically,
)
from xtrimogene_sc.base._errors import CheckpointError
from xtrimogene_sc.base._integrity import (
    INTEGRITY_KEY,
    integrity_record,
    verify_config,
    verify_file,
)

#: 2 adds the ``integrity`` record (checksums) and ``files``; version 1 directories still load.
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
KIND_KEY = "kind"
PRETRAINED = "xtrimogene"  # the kind of folders saved before kinds were recorded
#: kind -> (what it is, the call that loads it)
KINDS = {
    PRETRAINED: ("a pretrained model", "xtrimogene_sc.XTrimoGene.load"),
    "xtrimogene_classifier": ("a classifier", "xtrimogene_sc.XTrimoGeneClassifier.load"),
    "xtrimogene_perturbation": (
        "a perturbation model", "xtrimogene_sc.XTrimoGenePerturbation.load",
    ),
    "xtrimogene_drug_combination": (
        "a drug-combination model", "xtrimogene_sc.DrugCombinationModel.load",
    ),
}  # fmt: skip

FileWriter = Callable[[Path], Any]


def save_checked(
    dir_path: str | Path,
    *,
    kind: str,
    meta: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    extra_files: Mapping[str, FileWriter] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a model directory atomically, with checksums of its weights and settings.

    Parameters
    ----------
    dir_path
        New or empty directory, or (with ``overwrite``) one holding a saved model.
    kind
        One of :data:`KINDS`.
    meta
        JSON-serialisable settings (arrays are stored as lists).
    state_dict
        The weights, written to ``model.safetensors``.
    extra_files
        File name -> callable writing that file given its path.
    overwrite
        Replace the model files of an existing model directory (other files are kept).
    """
    if kind not in KINDS:
        msg = f"unknown model kind {kind!r}; known: {sorted(KINDS)}"
        raise ValueError(msg)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    files = dict(extra_files or {})

    def write(staging: Path) -> list[str]:
        save_file(tensors, str(staging / WEIGHTS_FILE))
        for name, writer in files.items():
            writer(staging / name)
        names = [WEIGHTS_FILE, *files, CONFIG_FILE]
        record = {"format_version": FORMAT_VERSION, KIND_KEY: kind, **meta, FILES_KEY: names}
        record = json.loads(json.dumps(record, default=json_default))  # what load will parse
        record[INTEGRITY_KEY] = integrity_record(record, {WEIGHTS_FILE: staging / WEIGHTS_FILE})
        (staging / CONFIG_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        return names

    return save_files_atomically(dir_path, write, overwrite=overwrite)


def load_checked(
    dir_path: str | Path, *, kind: str, needs: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read and verify a directory written by :func:`save_checked`; return settings and weights.

    ``needs`` names further files the kind must have. The settings come back without the
    format version, kind, file list and checksums.

    Raises
    ------
    FileNotFoundError
        ``dir_path`` does not exist or lacks one of the model files.
    NotADirectoryError
        ``dir_path`` is a file.
    ValueError
        The directory holds another kind of model; the message names the call that loads it.
    CheckpointError
        A file is damaged, was modified after saving (checksum mismatch), or is of an unknown
        format version; the message names the file.
    """
    source = Path(dir_path)
    if not source.exists():
        msg = f"{source}: no such model directory"
        raise FileNotFoundError(msg)
    if not source.is_dir():
        msg = f"{source} is a file, not a model directory written by save()"
        raise NotADirectoryError(msg)
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (source / f).exists()]
    if missing:
        msg = f"{source} is not an xtrimogene_sc model directory (missing {', '.join(missing)})"
        raise FileNotFoundError(msg)
    meta = read_meta(source / CONFIG_FILE)
    recorded = _verify_meta(meta, source / CONFIG_FILE)
    check_kind(meta.get(KIND_KEY, PRETRAINED), kind, source)
    missing = [f for f in needs if not (source / f).exists()]
    if missing:
        msg = f"{source} is not an xtrimogene_sc model directory (missing {', '.join(missing)})"
        raise FileNotFoundError(msg)
    try:
        state_dict = load_file(str(source / WEIGHTS_FILE))
    except SafetensorError as err:
        msg = (
            f"{source / WEIGHTS_FILE} is not a valid safetensors file ({err}); nothing was loaded"
        )
        raise CheckpointError(msg) from err
    if recorded is not None:
        verify_file(source / WEIGHTS_FILE, recorded.get(WEIGHTS_FILE))
    for key in ("format_version", KIND_KEY, INTEGRITY_KEY, FILES_KEY):
        meta.pop(key, None)
    return meta, state_dict


def check_kind(found: Any, expected: str, source: Path) -> None:
    """Refuse a directory of another kind, naming what it holds and the call that loads it."""
    if found == expected:
        return
    wanted = KINDS[expected][0]
    if found not in KINDS:
        msg = (
            f"{source} holds a model of unknown kind {found!r}, not {wanted}; it was written by "
            "another program or a newer xtrimogene_sc"
        )
        raise ValueError(msg)
    what, loader = KINDS[found]
    msg = f"{source} holds {what}, not {wanted}; load it with {loader}"
    raise ValueError(msg)


def read_meta(path: Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a model directory; damage is a :class:`CheckpointError`."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        msg = f"{path} is not valid JSON ({err}); the model directory is damaged"
        raise CheckpointError(msg) from err
    if not isinstance(meta, dict):
        msg = f"{path} holds a JSON {type(meta).__name__}, not a model configuration object"
        raise CheckpointError(msg)
    return meta


def _verify_meta(meta: dict[str, Any], path: Path) -> dict[str, str] | None:
    """Recorded file checksums (format 2), ``None`` for an unverifiable format-1 directory."""
    version = meta.get("format_version")
    if version not in _READABLE_VERSIONS:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        hint = "; upgrade xtrimogene_sc" if newer else ""
        msg = (
            f"{path}: model format version {version!r} is not one this xtrimogene_sc reads "
            f"({list(_READABLE_VERSIONS)}){hint}"
        )
        raise CheckpointError(msg)
    if version >= 2:
        return verify_config(meta, path)
    msg = (
        f"{path.parent} was saved by an older xtrimogene_sc without checksums, so it is loaded "
        "unverified; save it again to add them"
    )
    warnings.warn(msg, UserWarning, stacklevel=5)
    return None


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback: arrays and tensors as lists; anything else is refused."""
    if hasattr(value, "tolist"):
        return value.tolist()
    msg = f"cannot store {type(value).__name__} in config.json"
    raise TypeError(msg)


def load_state_checked(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load weights, explaining shape or name mismatches instead of a bare RuntimeError."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        msg = (
            "checkpoint does not fit this model (was it saved with another preset or config?): "
            f"{len(wrong)} shape mismatches {wrong[:3]}, missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
        raise ValueError(msg)
    module.load_state_dict(state_dict)
