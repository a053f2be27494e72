"""Atomic, pickle-free model directories: ``config.json``, ``model.safetensors``, ``vocab.tsv``."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from xtrimogene_sc.data._vocab import GeneVocab
from xtrimogene_sc.module._config import XTrimoGeneConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.tsv"
FORMAT_VERSION = 1


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
    """Write a model directory atomically: a reader sees the old or the new one, never half.

    ``extra_files`` maps file names to callables that write them given a path.
    """
    target = Path(dir_path)
    if target.exists() and not overwrite:
        msg = f"{target} already exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
        save_file(tensors, str(staging / WEIGHTS_FILE))
        meta = {"format_version": FORMAT_VERSION, "config": config.to_dict(), **extra}
        (staging / CONFIG_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
        vocab.to_tsv(staging / VOCAB_FILE)
        for name, writer in (extra_files or {}).items():
            writer(staging / name)
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _swap_into_place(staging: Path, target: Path) -> None:
    if not target.exists():
        os.replace(staging, target)
        return
    retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(target, retired)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    msg = f"cannot store {type(value).__name__} in config.json"
    raise TypeError(msg)


def load_directory(
    dir_path: str | Path,
) -> tuple[XTrimoGeneConfig, dict[str, torch.Tensor], GeneVocab, dict[str, Any]]:
    """Read a directory written by :func:`save_directory` and check its vocabulary."""
    source = Path(dir_path)
    missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE) if not (source / f).exists()]
    if missing:
        msg = f"{source} is not an xtrimogene_sc model directory (missing {', '.join(missing)})"
        raise FileNotFoundError(msg)
    meta = json.loads((source / CONFIG_FILE).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        msg = f"unsupported model format version {meta.get('format_version')} in {source}"
        raise ValueError(msg)
    config = XTrimoGeneConfig.from_dict(meta.pop("config"))
    vocab = GeneVocab.from_tsv(source / VOCAB_FILE)
    check_vocab(vocab, GeneVocab.default(), source=str(source))
    try:
        state_dict = load_file(str(source / WEIGHTS_FILE))
    except SafetensorError as err:
        msg = (
            f"{source / WEIGHTS_FILE} is not a valid safetensors file ({err}); nothing was loaded"
        )
        raise ValueError(msg) from err
    return config, state_dict, vocab, meta


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
