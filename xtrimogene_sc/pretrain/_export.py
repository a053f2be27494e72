"""Export pretrained weights to a model directory that ``XTrimoGene.load`` reads.

The directory is the one :meth:`XTrimoGene.save` writes (``config.json``, ``model.safetensors``,
``vocab.tsv``), so no pickle is involved when it is loaded. Lightning checkpoints are read with
``torch.load(weights_only=True)``, which refuses arbitrary Python objects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.base._atomic import CONFIG_FILE
from xtrimogene_sc.base._saved import load_state_checked
from xtrimogene_sc.data._vocab import GeneVocab
from xtrimogene_sc.model._io import load_directory, save_directory
from xtrimogene_sc.module._config import XTrimoGeneConfig
from xtrimogene_sc.module._module import XTrimoGeneModule
from xtrimogene_sc.pretrain._config import PretrainConfig

logger = logging.getLogger(__name__)

#: Key under which the pretraining plan stores model metadata in Lightning checkpoints.
CHECKPOINT_META_KEY = "xtrimogene_sc"
_PLAN_PREFIX = "module."


def checkpoint_meta(config: XTrimoGeneConfig, **extra: Any) -> dict[str, Any]:
    """Metadata stored in every pretraining checkpoint: model config and vocabulary hash."""
    return {
        "config": config.to_dict(),
        "vocab_sha256": GeneVocab.default().sha256,
        "n_genes": TOKENS.N_GENES,
        **extra,
    }


def export_pretrained(
    source: str | Path | nn.Module,
    out_dir: str | Path,
    *,
    config: XTrimoGeneConfig | PretrainConfig | None = None,
    overwrite: bool = True,
) -> Path:
    """Write pretrained weights as a model directory for :meth:`XTrimoGene.load`.

    Parameters
    ----------
    source
        A Lightning checkpoint (``.ckpt``) written by ``pretrain``, a model directory, an
        :class:`~xtrimogene_sc.module.XTrimoGeneModule` or a training plan holding one in
        ``.module``.
    out_dir
        Directory to write (atomically replaced when it exists and ``overwrite``).
    config
        Model configuration. Default: the one stored in the checkpoint / directory / module.
        When given, the weights must fit it.
    overwrite
        Replace an existing ``out_dir``.

    Returns
    -------
    The path of the written directory.

    Raises
    ------
    ValueError
        The checkpoint was made with another gene vocabulary, or its tensors do not fit the
        configuration (names and shapes are listed).
    """
    state_dict, stored_config, extra = _read_source(source)
    if isinstance(config, PretrainConfig):
        config = config.model_config()
    config = config or stored_config
    if config is None:
        msg = f"{source} carries no model configuration; pass config="
        raise ValueError(msg)
    module = XTrimoGeneModule(config)
    load_state_checked(module, state_dict)  # explains any name/shape mismatch
    meta = {
        "setup_args": {},
        "is_trained": True,
        "n_positions": TOKENS.N_POSITIONS,
        "pretraining": extra,
    }
    path = save_directory(
        out_dir,
        config=config,
        state_dict=module.state_dict(),
        vocab=GeneVocab.default(),
        extra=meta,
        overwrite=overwrite,
    )
    logger.info("exported pretrained model to %s", path)
    return path


def _read_source(
    source: str | Path | nn.Module,
) -> tuple[dict[str, torch.Tensor], XTrimoGeneConfig | None, dict[str, Any]]:
    """State dict, stored config (if any) and provenance of ``source``."""
    if isinstance(source, nn.Module):
        module = (
            source if isinstance(source, XTrimoGeneModule) else getattr(source, "module", None)
        )
        if not isinstance(module, XTrimoGeneModule):
            msg = (
                f"cannot export a {type(source).__name__}: expected an XTrimoGeneModule or a plan"
            )
            raise TypeError(msg)
        return module.state_dict(), module.config, {}
    path = Path(source)
    if path.is_dir() and (path / CONFIG_FILE).exists():
        config, state_dict, _, meta = load_directory(path)  # checks the vocabulary
        return state_dict, config, dict(meta.get("pretraining", {}))
    if not path.is_file():
        msg = f"{path} is neither a Lightning checkpoint nor a model directory"
        raise FileNotFoundError(msg)
    return read_lightning_checkpoint(path)


def read_lightning_checkpoint(
    path: str | Path,
) -> tuple[dict[str, torch.Tensor], XTrimoGeneConfig | None, dict[str, Any]]:
    """Module weights, model config and provenance of a pretraining ``.ckpt`` (no pickle)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError and friends from the safe loader
        msg = (
            f"{path} could not be read as a plain-tensor Lightning checkpoint "
            f"(safe loading refused it: {type(err).__name__}: {str(err)[:200]})"
        )
        raise ValueError(msg) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        msg = f"{path} is not a Lightning checkpoint (no 'state_dict' entry)"
        raise ValueError(msg)
    meta = checkpoint.get(CHECKPOINT_META_KEY, {})
    expected = GeneVocab.default().sha256
    if meta.get("vocab_sha256", expected) != expected:
        msg = (
            f"{path} was trained with another gene vocabulary (sha256 "
            f"{str(meta['vocab_sha256'])[:12]}... vs this package's {expected[:12]}...); "
            "its gene positions would be misread, so it cannot be exported"
        )
        raise ValueError(msg)
    state = checkpoint["state_dict"]
    if any(key.startswith(_PLAN_PREFIX) for key in state):  # a training plan wraps the module
        state = {
            k.removeprefix(_PLAN_PREFIX): v for k, v in state.items() if k.startswith(_PLAN_PREFIX)
        }
    config = XTrimoGeneConfig.from_dict(meta["config"]) if "config" in meta else None
    extra = {
        "checkpoint": str(Path(path).name),
        "global_step": int(checkpoint.get("global_step", 0)),
        "epoch": int(checkpoint.get("epoch", 0)),
    }
    return state, config, extra
