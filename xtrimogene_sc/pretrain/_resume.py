"""Settings a resumed pretraining run must share with the run that wrote its checkpoint.

The data order is a function of the corpus, ``optim.seed``, ``optim.batch_size``, the number of
devices, ``data.num_workers``, ``data.shuffle_buffer`` and ``data.min_genes``; the weights only
fit the same model configuration. They are stored in every checkpoint and compared on resume, so
a changed one is refused by name instead of silently continuing with another data stream.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch

#: Entry of the checkpoint metadata holding the settings.
RESUME_KEY = "resume_settings"


def resume_settings(config: Any, source: Any, world_size: int) -> dict[str, Any]:
    """The settings of this run that a resume must not change (JSON-able, flat)."""
    sizes = [int(source.shard_size(s)) for s in source.shard_ids()]
    corpus = (
        f"{int(source.n_cells):,} cells in {len(sizes):,} shards (shard sizes sha256 "
        f"{hashlib.sha256(json.dumps(sizes).encode()).hexdigest()[:12]})"
    )
    settings: dict[str, Any] = {
        "corpus": corpus,
        "optim.seed": config.optim.seed,
        "optim.batch_size": config.optim.batch_size,
        "devices x nodes (world size)": int(world_size),
        "data.num_workers": config.data.num_workers,
        "data.shuffle_buffer": config.data.shuffle_buffer,
        "data.min_genes": config.data.min_genes,
    }
    for key, value in config.model_config().to_dict().items():
        settings[f"model.{key}"] = value
    return json.loads(json.dumps(settings))


def check_resume(checkpoint: str | Path, settings: dict[str, Any]) -> None:
    """Refuse to resume from ``checkpoint`` if a setting differs; name each one and both values.

    Raises
    ------
    ValueError
        Listing every changed setting as ``<name> was <checkpoint value>, now <value>``.
    """
    from xtrimogene_sc.pretrain._export import CHECKPOINT_META_KEY

    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    stored = state.get(CHECKPOINT_META_KEY, {}).get(RESUME_KEY)
    del state
    if stored is None:
        msg = (
            f"{checkpoint} records no run settings (written by an older xtrimogene_sc); resuming "
            "without checking that the corpus, seed, batch size, devices and model are unchanged"
        )
        warnings.warn(msg, UserWarning, stacklevel=3)
        return
    changed = [
        f"{name} was {stored[name]!r}, now {value!r}"
        for name, value in settings.items()
        if name in stored and stored[name] != value
    ]
    if changed:
        msg = (
            f"cannot resume from {checkpoint}: {len(changed)} setting(s) differ from the run that "
            f"wrote it ({'; '.join(changed)}). They define the data order and the model; resume "
            "with the same values, or start a new run (--no-resume or another run.output_dir)"
        )
        raise ValueError(msg)
