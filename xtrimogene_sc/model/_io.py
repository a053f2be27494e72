"""Atomic, pickle-free, checksummed model directories (config, safetensors weights, vocabulary).

A model directory holds ``config.json``, ``model.safetensors`` and ``vocab.tsv``. Saving never touches files the model did not write: a new directory is staged beside its final
name and renamed into place; an existing model directory has only its model files replaced, one
``os.replace`` per file, ``config.json`` (which holds the checksums) last, so a reader sees the
old model, the new one, or (after a crash between two renames) a mix that the checksums refuse.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from xtrimogene_sc.data._vocab import GeneVocab
from xtrimogene_sc.model._integrity import (
    INTEGRITY_KEY,
    integrity_record,
    verify_config,
    verify_file,
)
from xtrimogene_sc.model._scfoundation import CheckpointError
from xtrimogene_sc.module._config import XTrimoGeneConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.tsv"
#: 2 adds the ``integrity`` record (checksums) and ``files``; version 1 directories still load.
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_FILES_KEY = "files"  # every file the save wrote, so a later overwrite removes only those
_STAGING_PREFIX = ".xtg-save-"


def save_directory(
    dir_path: str | Path,
    *,
    config: XTrimoGeneConfig,
    state_dict: dict[str, torch.Tensor],
    vocab: GeneVocab,
    extra: dict[str, Any],
    overwrite: bool = False,
    extra_files: dict[str, Any] | None = None,
) -> Path:
    """Write a model directory atomically, with checksums of its weights and configuration.

    ``extra_files`` maps file names to callables that write them given a path. ``dir_path`` may
    be new, an empty directory, or (with ``overwrite``) a directory holding a saved model, whose
    model files are replaced while any other file in it is kept. A file, or a non-empty directory
    without a model, is refused with a ``FileExistsError`` and nothing is written.
    """
    return save_files_atomically(
        dir_path,
        lambda staging: _write_files(staging, config, state_dict, vocab, extra, extra_files or {}),
        overwrite=overwrite,
    )


def save_files_atomically(
    dir_path: str | Path, write: Callable[[Path], list[str]], *, overwrite: bool = False
) -> Path:
    """Run ``write(staging)`` in a staging folder, then move its files into ``dir_path``.

    ``write`` returns the names of the files it wrote, ``config.json`` last (moved last, so a
    directory never pairs new weights with an old configuration). The rules of
    :func:`save_directory` on what ``dir_path`` may be apply.
    """
    target = Path(dir_path)
    is_new = _check_target(target, overwrite=overwrite)
    if is_new:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{target.name}{_STAGING_PREFIX}{uuid.uuid4().hex[:8]}"
    else:
        _remove_stale_staging(target)
        staging = target / f"{_STAGING_PREFIX}{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        names = write(staging)
        if is_new:
            os.replace(staging, target)
        else:
            _replace_files(staging, target, names)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_files(
    staging: Path,
    config: XTrimoGeneConfig,
    state_dict: dict[str, torch.Tensor],
    vocab: GeneVocab,
    extra: dict[str, Any],
    extra_files: dict[str, Any],
) -> list[str]:
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    save_file(tensors, str(staging / WEIGHTS_FILE))
    vocab.to_tsv(staging / VOCAB_FILE)
    for name, writer in extra_files.items():
        writer(staging / name)
    names = [WEIGHTS_FILE, VOCAB_FILE, *extra_files, CONFIG_FILE]
    meta = {"format_version": FORMAT_VERSION, "config": config.to_dict(), **extra}
    meta[_FILES_KEY] = names
    meta = json.loads(json.dumps(meta, default=_json_default))  # exactly what load will parse
    meta[INTEGRITY_KEY] = integrity_record(meta, {WEIGHTS_FILE: staging / WEIGHTS_FILE})
    (staging / CONFIG_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return names


def _check_target(target: Path, *, overwrite: bool) -> bool:
    """``True`` for a new directory, ``False`` to write into an existing one; else refuse."""
    if target.is_symlink() and not target.exists() or target.exists() and not target.is_dir():
        msg = (
            f"{target} is a file, not a directory: a model is saved as a directory of files. "
            "Choose another path; nothing was written"
        )
        raise FileExistsError(msg)
    blocked = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        msg = f"cannot save a model to {target}: {blocked} is a file, not a directory"
        raise FileExistsError(msg)
    if not target.exists():
        return True
    entries = sorted(p.name for p in target.iterdir() if not p.name.startswith(_STAGING_PREFIX))
    if not entries:
        return False
    if holds_model(target):
        if not overwrite:
            msg = (
                f"{target} already exists and holds a saved model; pass overwrite=True to "
                "replace it (only the model's own files are replaced, other files are kept)"
            )
            raise FileExistsError(msg)
        blocking = [n for n in (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE) if (target / n).is_dir()]
        if blocking:
            msg = f"{target}: {blocking} are directories; cannot save a model over them"
            raise FileExistsError(msg)
        return False
    note = " (overwrite=True replaces an earlier saved model, never other files)"
    msg = (
        f"{target} already exists, is not empty ({len(entries)} entries, e.g. {entries[:4]}) and "
        "holds no saved model; save into a new or empty directory. Nothing was written"
        f"{note if overwrite else ''}"
    )
    raise FileExistsError(msg)


def holds_model(directory: str | Path) -> bool:
    """Whether ``directory`` holds a saved model (its ``config.json`` and weights file)."""
    folder = Path(directory)
    return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def _replace_files(staging: Path, target: Path, names: list[str]) -> None:
    """Move the staged files over the target's, ``config.json`` last; drop the old save's others."""
    previous = _files_of_previous_save(target)
    for name in names:  # names ends with config.json
        os.replace(staging / name, target / name)
    for name in sorted(previous - set(names)):
        stale = target / name
        if stale.is_file() and stale.parent == target:
            stale.unlink()


def _files_of_previous_save(target: Path) -> set[str]:
    try:
        meta = json.loads((target / CONFIG_FILE).read_text(encoding="utf-8"))
        recorded = meta.get(_FILES_KEY, [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {
        n for n in recorded if isinstance(n, str) and "/" not in n and n not in ("", ".", "..")
    }


def _remove_stale_staging(target: Path) -> None:
    """Delete staging folders left in ``target`` by a save that was killed."""
    for child in target.glob(f"{_STAGING_PREFIX}*"):
        shutil.rmtree(child, ignore_errors=True)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    msg = f"cannot store {type(value).__name__} in config.json"
    raise TypeError(msg)


def load_directory(
    dir_path: str | Path,
) -> tuple[XTrimoGeneConfig, dict[str, torch.Tensor], GeneVocab, dict[str, Any]]:
    """Read a directory written by :func:`save_directory`, verifying checksums and vocabulary.

    Raises
    ------
    FileNotFoundError
        ``dir_path`` does not exist or lacks one of the model files.
    NotADirectoryError
        ``dir_path`` is a file.
    CheckpointError
        A file is damaged, was modified after saving (checksum mismatch), or is of an unknown
        format version; the message names the file.
    ValueError
        The gene vocabulary differs from the package's.
    """
    source = Path(dir_path)
    if not source.exists():
        msg = f"{source}: no such model directory"
        raise FileNotFoundError(msg)
    if not source.is_dir():
        msg = f"{source} is a file, not a model directory written by save()"
        raise NotADirectoryError(msg)
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE) if not (source / f).exists()]
    if missing:
        msg = f"{source} is not an xtrimogene_sc model directory (missing {', '.join(missing)})"
        raise FileNotFoundError(msg)
    meta = _read_meta(source / CONFIG_FILE)
    recorded = _verify_meta(meta, source / CONFIG_FILE)
    config = _config_from(meta.pop("config", None), source / CONFIG_FILE)
    vocab = GeneVocab.from_tsv(source / VOCAB_FILE)
    check_vocab(vocab, GeneVocab.default(), source=str(source))
    try:
        state_dict = load_file(str(source / WEIGHTS_FILE))
    except SafetensorError as err:
        msg = (
            f"{source / WEIGHTS_FILE} is not a valid safetensors file ({err}); nothing was loaded"
        )
        raise CheckpointError(msg) from err
    if recorded is not None:
        verify_file(source / WEIGHTS_FILE, recorded.get(WEIGHTS_FILE))
    meta.pop(INTEGRITY_KEY, None)
    meta.pop(_FILES_KEY, None)
    return config, state_dict, vocab, meta


def _read_meta(path: Path) -> dict[str, Any]:
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
    warnings.warn(msg, UserWarning, stacklevel=4)
    return None


def _config_from(values: Any, path: Path) -> XTrimoGeneConfig:
    if not isinstance(values, dict):
        msg = f"{path} has no 'config' object; the model directory is damaged"
        raise CheckpointError(msg)
    try:
        return XTrimoGeneConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        msg = f"{path}: invalid model configuration ({err})"
        raise CheckpointError(msg) from err


def check_vocab(found: GeneVocab, expected: GeneVocab, *, source: str) -> None:
    """Refuse a checkpoint whose gene vocabulary differs from the package's."""
    if found == expected:
        return
    n = min(len(found), len(expected))
    differ = [i for i in range(n) if found.names[i] != expected.names[i]]
    examples = ", ".join(f"{i}: {found.names[i]}!={expected.names[i]}" for i in differ[:3])
    msg = (
        f"the gene vocabulary in {source} ({len(found)} genes) differs from this package's "
        f"19,264-gene vocabulary at {len(differ) + abs(len(found) - len(expected))} positions "
        f"({examples}); its gene positions would be misread, so it cannot be loaded"
    )
    raise ValueError(msg)


def load_state_checked(module: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
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
