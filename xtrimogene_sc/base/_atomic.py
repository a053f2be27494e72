"""Atomic writes of a model directory: a reader sees the old model, the new one, or a refusal.

A new directory is staged beside its final name and renamed into place. An existing model
directory has only its model files replaced, one ``os.replace`` per file, ``config.json`` (which
holds the checksums) last, so a crash between two renames leaves a mix that the checksums refuse.
Saving never touches files the model did not write.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FILES_KEY = "files"  # every file a save wrote, so a later overwrite removes only those
_STAGING_PREFIX = ".xtg-save-"


def save_files_atomically(
    dir_path: str | Path, write: Callable[[Path], list[str]], *, overwrite: bool = False
) -> Path:
    """Run ``write(staging)`` in a staging folder, then move its files into ``dir_path``.

    ``write`` returns the names of the files it wrote, ``config.json`` last (moved last, so a
    directory never pairs new weights with an old configuration). ``dir_path`` may be new, an
    empty directory, or (with ``overwrite``) a directory holding a saved model, whose model files
    are replaced while any other file in it is kept. A file, or a non-empty directory without a
    model, is refused with a ``FileExistsError`` and nothing is written.
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


def holds_model(directory: str | Path) -> bool:
    """Whether ``directory`` holds a saved model (its ``config.json`` and weights file)."""
    folder = Path(directory)
    return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


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
        return False
    note = " (overwrite=True replaces an earlier saved model, never other files)"
    msg = (
        f"{target} already exists, is not empty ({len(entries)} entries, e.g. {entries[:4]}) and "
        "holds no saved model; save into a new or empty directory. Nothing was written"
        f"{note if overwrite else ''}"
    )
    raise FileExistsError(msg)


def _replace_files(staging: Path, target: Path, names: list[str]) -> None:
    """Move the staged files over the target's, ``config.json`` last; drop the old save's others."""
    blocking = [n for n in names if (target / n).is_dir()]
    if blocking:
        msg = f"{target}: {blocking} are directories; cannot save a model over them"
        raise FileExistsError(msg)
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
        recorded = meta.get(FILES_KEY, [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {
        n for n in recorded if isinstance(n, str) and "/" not in n and n not in ("", ".", "..")
    }


def _remove_stale_staging(target: Path) -> None:
    """Delete staging folders left in ``target`` by a save that was killed."""
    for child in target.glob(f"{_STAGING_PREFIX}*"):
        shutil.rmtree(child, ignore_errors=True)
