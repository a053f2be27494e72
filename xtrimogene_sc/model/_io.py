"""Directories of models built on an xTrimoGene backbone: its configuration and gene vocabulary.

The pretrained model, the classifier and the perturbation model save the backbone's
:class:`~xtrimogene_sc.XTrimoGeneConfig` under ``config`` and the vocabulary as ``vocab.tsv``
beside the weights, in the checksummed format of :mod:`xtrimogene_sc.base._saved`. ``vocab.tsv``
needs no checksum: it is compared gene by gene with the package's vocabulary on every load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from xtrimogene_sc.base._errors import CheckpointError
from xtrimogene_sc.base._saved import PRETRAINED, FileWriter, load_checked, save_checked
from xtrimogene_sc.data._vocab import GeneVocab
from xtrimogene_sc.module._config import XTrimoGeneConfig

VOCAB_FILE = "vocab.tsv"


def save_directory(
    dir_path: str | Path,
    *,
    config: XTrimoGeneConfig,
    state_dict: dict[str, torch.Tensor],
    vocab: GeneVocab,
    extra: dict[str, Any],
    kind: str = PRETRAINED,
    overwrite: bool = False,
    extra_files: dict[str, FileWriter] | None = None,
) -> Path:
    """Write a backbone model's directory: weights, ``vocab.tsv`` and ``config.json``.

    ``extra`` holds the model's own settings beside the backbone ``config``; ``extra_files`` maps
    further file names to callables that write them. See
    :func:`~xtrimogene_sc.base._saved.save_checked` for what ``dir_path`` may be.
    """
    return save_checked(
        dir_path, kind=kind, meta={"config": config.to_dict(), **extra}, state_dict=state_dict,
        extra_files={VOCAB_FILE: vocab.to_tsv, **(extra_files or {})}, overwrite=overwrite,
    )  # fmt: skip


def load_directory(
    dir_path: str | Path, *, kind: str = PRETRAINED
) -> tuple[XTrimoGeneConfig, dict[str, torch.Tensor], GeneVocab, dict[str, Any]]:
    """Read a directory written by :func:`save_directory`, verifying checksums and vocabulary.

    Raises
    ------
    FileNotFoundError
        ``dir_path`` does not exist or lacks one of the model files.
    NotADirectoryError
        ``dir_path`` is a file.
    ValueError
        It holds another kind of model (the message names the loader to use), or its gene
        vocabulary differs from the package's.
    CheckpointError
        A file is damaged, was modified after saving (checksum mismatch), or is of an unknown
        format version; the message names the file.
    """
    source = Path(dir_path)
    meta, state_dict = load_checked(source, kind=kind, needs=(VOCAB_FILE,))
    config = _config_from(meta.pop("config", None), source / "config.json")
    vocab = GeneVocab.from_tsv(source / VOCAB_FILE)
    check_vocab(vocab, GeneVocab.default(), source=str(source))
    return config, state_dict, vocab, meta


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
