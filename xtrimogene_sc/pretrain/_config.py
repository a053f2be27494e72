"""Pretraining run configuration: one frozen dataclass per section, read from TOML or JSON.

A config file has five tables, every key optional (defaults = the reference 100M recipe where
the spec gives one)::

    [data]   source, paths, layer, gene_symbols_key, min_genes, shuffle_buffer, num_workers,
             source_options
    [model]  preset, plus any XTrimoGeneConfig field as an override
    [optim]  batch_size, accumulate_grad_batches, lr, weight_decay, warmup_steps, max_steps,
             min_lr_ratio, gradient_clip_val, precision, seed
    [rda]    enabled, p_full, min_fraction, max_fraction, min_counts
    [run]    output_dir, checkpoint_every_n_steps, keep_last_k, log_every_n_steps, devices,
             num_nodes, strategy, accelerator, resume, export_dir, progress_bar

Relative paths (``data.paths`` for h5ad/preprocessed sources, ``run.output_dir``,
``run.export_dir``) are resolved against the directory of the config file.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch

from xtrimogene_sc.module._config import XTrimoGeneConfig

SourceKind = Literal["h5ad", "preprocessed", "soma"]
_SOURCES = ("h5ad", "preprocessed", "soma")
_STRATEGIES = ("auto", "ddp")


@dataclass(frozen=True)
class DataConfig:
    """Where the cells come from and how they are streamed.

    Attributes
    ----------
    source
        ``"h5ad"`` (files or a directory of ``.h5ad``), ``"preprocessed"`` (a directory written by
        ``preprocess_h5ad``) or ``"soma"`` (a TileDB-SOMA experiment URI).
    paths
        The files/directory (h5ad), the directory (preprocessed) or the URI (soma).
    layer, gene_symbols_key
        Count layer and ``var`` column of gene symbols (h5ad sources).
    min_genes
        Skip cells with fewer expressed vocabulary genes (the reference QC keeps > 200).
    shuffle_buffer
        Cells held in the streaming shuffle buffer.
    num_workers
        DataLoader worker processes per device (reading and tokenizing run there).
    source_options
        Extra keyword arguments of the source class (e.g. SOMA query options).
    """

    source: SourceKind = "h5ad"
    paths: tuple[str, ...] = ()
    layer: str | None = None
    gene_symbols_key: str | None = None
    min_genes: int = 200
    shuffle_buffer: int = 16384
    num_workers: int = 2
    source_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.paths, str | Path):
            object.__setattr__(self, "paths", (str(self.paths),))
        object.__setattr__(self, "paths", tuple(str(p) for p in self.paths))
        _check_choice("data.source", self.source, _SOURCES)
        if self.source in ("preprocessed", "soma") and len(self.paths) > 1:
            msg = (
                f"data.source={self.source!r} reads one directory/URI, got {len(self.paths)} paths"
            )
            raise ValueError(msg)
        _check_min("data.min_genes", self.min_genes, 0)
        _check_min("data.shuffle_buffer", self.shuffle_buffer, 1)
        _check_min("data.num_workers", self.num_workers, 0)


@dataclass(frozen=True)
class ModelSection:
    """A size preset plus field overrides of :class:`~xtrimogene_sc.module.XTrimoGeneConfig`."""

    preset: str = "100m"
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        valid = {f.name for f in fields(XTrimoGeneConfig)}
        unknown = sorted(set(self.overrides) - valid)
        if unknown:
            msg = f"unknown [model] keys {unknown}; valid keys are ['preset'] + {sorted(valid)}"
            raise ValueError(msg)
        self.build()  # fail early on a bad preset or value

    def build(self) -> XTrimoGeneConfig:
        """The module configuration."""
        return XTrimoGeneConfig.preset(self.preset, **self.overrides)


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation.

    ``batch_size`` is per device: cells per optimiser step are
    ``batch_size * accumulate_grad_batches * devices * num_nodes`` (reference: 2 x 8 x 64 = 1,024).
    ``warmup_steps`` and ``max_steps`` count optimiser steps.
    """

    batch_size: int = 2
    accumulate_grad_batches: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 9766
    max_steps: int = 100_000
    min_lr_ratio: float = 0.05
    gradient_clip_val: float | None = 1.0
    precision: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_min("optim.batch_size", self.batch_size, 1)
        _check_min("optim.accumulate_grad_batches", self.accumulate_grad_batches, 1)
        _check_min("optim.max_steps", self.max_steps, 1)
        _check_min("optim.warmup_steps", self.warmup_steps, 0)
        _check_min("optim.seed", self.seed, 0)
        for name in ("lr", "weight_decay", "min_lr_ratio", "gradient_clip_val"):
            value = getattr(self, name)
            if value is not None or name != "gradient_clip_val":
                _check_real(f"optim.{name}", value)
        if self.weight_decay < 0 or (self.gradient_clip_val or 0) < 0:
            msg = "optim.weight_decay and optim.gradient_clip_val must be >= 0"
            raise ValueError(msg)
        if not self.lr > 0:
            msg = f"optim.lr must be positive, got {self.lr}"
            raise ValueError(msg)
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            msg = f"optim.min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}"
            raise ValueError(msg)

    def resolved_precision(self, accelerator: str = "auto") -> str:
        """``"auto"`` -> ``"bf16-mixed"`` on a bf16-capable CUDA GPU, else ``"32-true"``."""
        if self.precision != "auto":
            return self.precision
        on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"


@dataclass(frozen=True)
class RDAConfig:
    """Read-depth-aware pretraining (see :class:`~xtrimogene_sc.pretrain.ReadDepthAugmentation`)."""

    enabled: bool = False
    p_full: float = 0.5
    min_fraction: float = 0.01
    max_fraction: float = 1.0
    min_counts: int = 1

    def __post_init__(self) -> None:
        for name in ("p_full", "min_fraction", "max_fraction"):
            _check_real(f"rda.{name}", getattr(self, name))
        if not 0.0 <= self.p_full <= 1.0:
            msg = f"rda.p_full must lie in [0, 1], got {self.p_full}"
            raise ValueError(msg)
        if not 0.0 < self.min_fraction <= self.max_fraction <= 1.0:
            msg = (
                "rda needs 0 < min_fraction <= max_fraction <= 1, got "
                f"{self.min_fraction}, {self.max_fraction}"
            )
            raise ValueError(msg)
        _check_min("rda.min_counts", self.min_counts, 1)


@dataclass(frozen=True)
class RunConfig:
    """Output, checkpointing, logging and devices."""

    output_dir: str = "xtg_pretrain"
    checkpoint_every_n_steps: int = 1000
    keep_last_k: int = 3
    log_every_n_steps: int = 50
    devices: int | str | list[int] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"
    resume: bool = True
    export_dir: str | None = None
    progress_bar: bool = True

    def __post_init__(self) -> None:
        _check_min("run.checkpoint_every_n_steps", self.checkpoint_every_n_steps, 1)
        _check_min("run.keep_last_k", self.keep_last_k, 0)
        _check_min("run.log_every_n_steps", self.log_every_n_steps, 1)
        _check_min("run.num_nodes", self.num_nodes, 1)
        _check_choice("run.strategy", self.strategy, _STRATEGIES)

    @property
    def checkpoint_dir(self) -> Path:
        """``output_dir/checkpoints``."""
        return Path(self.output_dir) / "checkpoints"

    @property
    def model_dir(self) -> Path:
        """Where the final model is exported (default ``output_dir/model``)."""
        return Path(self.export_dir) if self.export_dir else Path(self.output_dir) / "model"


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelSection,
    "optim": OptimConfig,
    "rda": RDAConfig,
    "run": RunConfig,
}


@dataclass(frozen=True)
class PretrainConfig:
    """Everything a pretraining run needs; see the module docstring for the file layout."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimConfig = field(default_factory=OptimConfig)
    rda: RDAConfig = field(default_factory=RDAConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def from_file(cls, path: str | Path) -> PretrainConfig:
        """Read a ``.toml`` or ``.json`` config; relative paths are taken from the file's folder."""
        path = Path(path)
        if not path.is_file():
            msg = f"config file {path} does not exist"
            raise FileNotFoundError(msg)
        if path.suffix.lower() not in (".toml", ".json"):
            msg = f"config file {path} must end in .toml or .json"
            raise ValueError(msg)
        try:
            text = path.read_text(encoding="utf-8")
            values = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
        except (UnicodeDecodeError, ValueError) as err:  # TOMLDecodeError, JSONDecodeError
            msg = f"config file {path} is not valid {path.suffix[1:].upper()}: {err}"
            raise ValueError(msg) from err
        if not isinstance(values, dict):
            msg = f"config file {path} must hold tables/objects, not a {type(values).__name__}"
            raise ValueError(msg)
        try:
            return cls.from_dict(values, base_dir=path.parent)
        except ValueError as err:
            msg = f"config file {path}: {err}"
            raise ValueError(msg) from err

    @classmethod
    def from_dict(
        cls, values: dict[str, Any], *, base_dir: str | Path | None = None
    ) -> PretrainConfig:
        """Build from nested dicts (the file layout); unknown keys raise a ValueError."""
        unknown = sorted(set(values) - set(_SECTIONS))
        if unknown:
            msg = f"unknown config sections {unknown}; valid sections are {list(_SECTIONS)}"
            raise ValueError(msg)
        sections = {}
        for name, section in _SECTIONS.items():
            table = values.get(name, {})
            if not isinstance(table, dict):
                msg = f"[{name}] must be a table of settings, got {table!r}"
                raise ValueError(msg)
            table = dict(table)
            if name == "model":
                table = {"preset": table.pop("preset", "100m"), "overrides": table}
            else:
                _check_keys(name, table, section)
            try:
                sections[name] = section(**table)
            except TypeError as err:  # e.g. lr = "fast", paths = 5
                msg = f"[{name}] has a value of the wrong type ({err})"
                raise ValueError(msg) from err
        config = cls(**sections)
        return config if base_dir is None else config._resolve_paths(Path(base_dir))

    def to_dict(self) -> dict[str, Any]:
        """Nested dict in the file layout (``from_dict(to_dict())`` round-trips)."""
        out = {name: asdict(getattr(self, name)) for name in _SECTIONS}
        out["data"]["paths"] = list(self.data.paths)
        model = out.pop("model")
        out["model"] = {"preset": model["preset"], **model["overrides"]}
        return out

    def model_config(self) -> XTrimoGeneConfig:
        """The :class:`~xtrimogene_sc.module.XTrimoGeneConfig` of the model to pretrain."""
        return self.model.build()

    def updated(self, **sections: dict[str, Any]) -> PretrainConfig:
        """Copy with some fields replaced, e.g. ``updated(run={"output_dir": "out"})``."""
        unknown = sorted(set(sections) - set(_SECTIONS))
        if unknown:
            msg = f"unknown config sections {unknown}; valid sections are {list(_SECTIONS)}"
            raise ValueError(msg)
        new = {}
        for name, changes in sections.items():
            if name == "model":
                changes = dict(changes)
                preset = changes.pop("preset", self.model.preset)
                new[name] = ModelSection(preset, {**self.model.overrides, **changes})
            else:
                _check_keys(name, changes, _SECTIONS[name])
                new[name] = replace(getattr(self, name), **changes)
        return replace(self, **new)

    def _resolve_paths(self, base: Path) -> PretrainConfig:
        def resolve(p: str | None) -> str | None:
            return None if p is None else str((base / Path(p).expanduser()).resolve())

        data = self.data
        if data.source in ("h5ad", "preprocessed"):
            data = replace(data, paths=tuple(resolve(p) for p in data.paths))
        run = replace(
            self.run,
            output_dir=resolve(self.run.output_dir),
            export_dir=resolve(self.run.export_dir),
        )
        return replace(self, data=data, run=run)


def _check_keys(section: str, table: dict[str, Any], cls: type) -> None:
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(table) - set(valid))
    if unknown:
        msg = f"unknown [{section}] keys {unknown}; valid keys are {valid}"
        raise ValueError(msg)


def _check_min(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or value < minimum:
        msg = f"{name} must be an integer >= {minimum}, got {value!r}"
        raise ValueError(msg)


def _check_real(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{name} must be a finite number, got {value!r}"
        raise ValueError(msg)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        msg = f"{name} must be one of {list(choices)}, got {value!r}"
        raise ValueError(msg)
