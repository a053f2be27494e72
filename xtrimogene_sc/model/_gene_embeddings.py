"""Streaming decoder context embeddings: mean over cells, or per cell to HDF5."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch

from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.data._vocab import GeneVocab
from xtrimogene_sc.model._precision import Precision, inference_precision
from xtrimogene_sc.module._module import XTrimoGeneModule

MAX_IN_MEMORY_BYTES = 2 * 1024**3


def select_positions(vocab: GeneVocab, genes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Vocabulary positions of ``genes`` (all genes when ``None``); unknown symbols are an error."""
    if genes is None:
        return np.arange(len(vocab)), list(vocab.names)
    if isinstance(genes, str) or len(genes) == 0:
        msg = f"genes must be a non-empty list of symbols (or None for all), got {genes!r}"
        raise ValueError(msg)
    positions = vocab.positions(list(genes))
    unknown = [g for g, p in zip(genes, positions, strict=True) if p < 0]
    if unknown:
        msg = f"{len(unknown)} requested genes are not in the vocabulary, e.g. {unknown[:5]}"
        raise ValueError(msg)
    return positions, list(genes)


def run(
    module: XTrimoGeneModule,
    batches: Iterable[tuple[np.ndarray, SparseCells]],
    positions: np.ndarray,
    names: list[str],
    *,
    device: torch.device,
    n_obs: int,
    reduce: str | None,
    out_file: str | Path | None,
    obs_names: list[str] | None,
    precision: Precision | None = None,
) -> pd.DataFrame | np.ndarray | Path:
    """Run the decoder batch by batch and aggregate or write the selected gene rows."""
    if reduce not in ("mean", None):
        msg = f"reduce must be 'mean' or None, got {reduce!r}"
        raise ValueError(msg)
    dim = module.config.decoder_dim
    index = torch.as_tensor(positions, device=device)
    if (
        reduce is None
        and out_file is None
        and n_obs * len(positions) * dim * 4 > MAX_IN_MEMORY_BYTES
    ):
        msg = (
            f"{n_obs} cells x {len(positions)} genes x {dim} would exceed 2 GB in memory; "
            "pass out_file= to stream to HDF5, a smaller genes= list, or reduce='mean'"
        )
        raise ValueError(msg)
    module.eval()
    total = np.zeros((len(positions), dim), dtype=np.float64)
    with _Sink(out_file, n_obs, len(positions), dim, names, obs_names, reduce) as sink:
        for rows, cells in batches:
            with torch.inference_mode(), inference_precision(device, precision):
                context = module.decode_context(cells.to(device))
            selected = context[:, index].float().cpu().numpy()  # (b, genes, d)
            if reduce == "mean":
                total += selected.sum(axis=0)
            else:
                sink.write(rows, selected)
        if reduce == "mean":
            return pd.DataFrame(total / max(1, n_obs), index=pd.Index(names, name="gene"))
        return sink.result()


class _Sink:
    """Destination of per-cell embeddings: an HDF5 dataset or an in-memory array."""

    def __init__(self, out_file, n_obs, n_genes, dim, names, obs_names, reduce) -> None:
        self.path = None if out_file is None else Path(out_file)
        self.shape = (n_obs, n_genes, dim)
        self.names, self.obs_names, self.reduce = names, obs_names, reduce
        self.file: h5py.File | None = None
        self.array: Any = None

    def __enter__(self) -> _Sink:
        if self.reduce is not None:
            return self
        if self.path is None:
            self.array = np.empty(self.shape, dtype=np.float32)
            return self
        # written beside the target and moved into place on success: never a half-written file
        self.partial = self.path.parent / f".{self.path.name}.partial-{os.getpid()}"
        self.file = h5py.File(self.partial, "w")
        chunks = (1, self.shape[1], self.shape[2])
        self.array = self.file.create_dataset("gene_embeddings", self.shape, "f4", chunks=chunks)
        self.file["genes"] = np.asarray(self.names, dtype="S")
        if self.obs_names is not None:
            self.file["obs_names"] = np.asarray(self.obs_names, dtype="S")
        return self

    def write(self, rows: np.ndarray, values: np.ndarray) -> None:
        order = np.argsort(rows)
        if self.file is not None:
            for r, v in zip(rows[order], values[order], strict=True):
                self.array[int(r)] = v
        else:
            self.array[rows] = values

    def result(self) -> np.ndarray | Path:
        return self.path if self.path is not None else self.array

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.file is None:
            return
        self.file.close()
        if exc_type is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)
