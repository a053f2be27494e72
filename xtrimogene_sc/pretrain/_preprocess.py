"""Convert h5ad files into the on-disk corpus format that the pretraining loader reads fastest.

Layout of ``output_dir``::

    manifest.json                  format version, vocabulary hash, shards, per-input statistics
    shards/<shard>/indptr.npy      int64 (n_cells + 1) row pointers
    shards/<shard>/indices.npy     uint16 vocabulary positions (19,264 < 65,536), sorted per row
    shards/<shard>/data.npy        float32 raw counts (integers, exact up to 2**24)

Inputs are read backed, in row blocks, aligned to the vocabulary and QC-filtered (cells with at
least ``min_genes`` expressed vocabulary genes, as ``sc.pp.filter_cells(min_genes=...)``). Each shard
is written under a temporary name and renamed when complete; the manifest is rewritten atomically
after every input file, so an interrupted run resumes with the first unfinished file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from xtrimogene_sc._constants import TOKENS

from ._inputs import describe_read_error, drop_known_content, open_inputs
from ._manifest import MANIFEST, new_manifest, read_manifest, write_manifest
from ._sources import ARRAYS, H5adDirectorySource, list_h5ad

logger = logging.getLogger(__name__)

_TMP = ".tmp-"
_HEADER_BYTES = 128
_MAX_EXACT_FLOAT32 = 2**24
_READ_BLOCK = 8192


class _NpyAppender:
    """A 1-D ``.npy`` file written incrementally; the header is filled in on close."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.length = 0
        self._fh = open(path, "wb")  # noqa: SIM115 (closed by close())
        self._fh.write(b"\0" * _HEADER_BYTES)

    def append(self, values: np.ndarray) -> None:
        np.ascontiguousarray(values, dtype=self.dtype).tofile(self._fh)
        self.length += len(values)

    def close(self) -> None:
        text = (
            f"{{'descr': {self.dtype.str!r}, 'fortran_order': False, 'shape': ({self.length},), }}"
        )
        text = text.ljust(_HEADER_BYTES - 11) + "\n"
        header = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")
        self._fh.seek(0)
        self._fh.write(header)
        self._fh.close()


class ShardWriter:
    """Write aligned CSR blocks into shards of at most ``cells_per_shard`` cells.

    Parameters
    ----------
    shards_dir
        Folder receiving one sub-folder per shard.
    prefix
        Shard names are ``<prefix>-0000``, ``<prefix>-0001``, ...
    cells_per_shard
        Maximum number of cells per shard.
    source
        Recorded in each shard's manifest entry (e.g. the input file).
    """

    def __init__(
        self, shards_dir: Path, prefix: str, cells_per_shard: int, source: str | None = None
    ) -> None:
        self.shards_dir, self.prefix, self.source = Path(shards_dir), prefix, source
        self.cells_per_shard = cells_per_shard
        self.shards: list[dict[str, Any]] = []
        self._open: dict[str, _NpyAppender] | None = None
        self._tmp: Path | None = None
        self._n = self._nnz = 0

    def add(self, block: sp.csr_matrix) -> None:
        """Append cells (aligned ``(n, 19264)`` CSR raw counts)."""
        if block.shape[1] != TOKENS.N_GENES:
            msg = f"blocks must be aligned to the {TOKENS.N_GENES}-gene vocabulary, got {block.shape}"
            raise ValueError(msg)
        if block.nnz and float(block.data.max()) > _MAX_EXACT_FLOAT32:
            msg = f"{self.source}: counts above 2**24 cannot be stored exactly as float32."
            raise ValueError(msg)
        start = 0
        while start < block.shape[0]:
            if self._open is None:
                self._start()
            take = min(self.cells_per_shard - self._n, block.shape[0] - start)
            self._write(block[start : start + take])
            start += take
            if self._n == self.cells_per_shard:
                self._finish_shard()

    def finish(self) -> list[dict[str, Any]]:
        """Close the last shard; return the manifest entries of all shards written."""
        if self._open is not None:
            self._finish_shard()
        return self.shards

    def abort(self) -> None:
        """Close and delete the shard in progress (completed shards are kept)."""
        if self._open is not None:
            for appender in self._open.values():
                appender.close()
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._open = None

    def _start(self) -> None:
        name = f"{self.prefix}-{len(self.shards):04d}"
        self._tmp = self.shards_dir / f"{_TMP}{name}"
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(parents=True)
        self._open = {
            key: _NpyAppender(self._tmp / f"{key}.npy", dt) for key, dt in ARRAYS.items()
        }
        self._open["indptr"].append(np.zeros(1, dtype=np.int64))
        self._n = self._nnz = 0

    def _write(self, block: sp.csr_matrix) -> None:
        block = sp.csr_matrix(block)
        block.sort_indices()
        self._open["indptr"].append(block.indptr[1:].astype(np.int64) + self._nnz)
        self._open["indices"].append(block.indices)
        self._open["data"].append(block.data)
        self._n += block.shape[0]
        self._nnz += block.nnz

    def _finish_shard(self) -> None:
        for appender in self._open.values():
            appender.close()
        name = self._tmp.name[len(_TMP) :]
        os.rename(self._tmp, self.shards_dir / name)
        entry = {"id": name, "path": f"shards/{name}", "n_cells": self._n, "nnz": self._nnz}
        self.shards.append(entry | {"source": self.source})
        self._open = self._tmp = None


def preprocess_h5ad(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    min_genes: int = 200,
    layer: str | None = None,
    gene_symbols_key: str | None = None,
    cells_per_shard: int = 100_000,
    progress: bool = True,
    skip_bad: bool = False,
) -> Path:
    """Convert h5ad files into aligned, QC-filtered shards for :class:`PreprocessedSource`.

    Parameters
    ----------
    inputs
        A folder of ``.h5ad`` files or a list of paths.
    output_dir
        Corpus folder (created). Rerunning on the same folder resumes: inputs recorded as complete
        with unchanged size and modification time are skipped, half-written shards are removed.
        Inputs are also known by content (size and SHA-256): a file already in the corpus under
        another path (a moved folder, a copy) is not processed again, so no cell is there twice.
    min_genes
        Keep cells with at least this many expressed vocabulary genes (scFoundation QC: 200).
    layer
        Raw-count layer of the inputs (``None``: ``X``; ``"raw"``: ``raw/X``).
    gene_symbols_key
        ``var`` column with gene symbols, when var names are not symbols.
    cells_per_shard
        Maximum cells per shard; smaller shards balance better across ranks and workers.
    progress
        Show a progress bar over input cells.
    skip_bad
        Skip, with a warning, input files that cannot be read (not HDF5, truncated, too few
        vocabulary genes, no such layer, not raw counts) instead of refusing. They are listed in
        the manifest's ``skipped`` entry and tried again by the next run.

    Returns
    -------
    Path
        ``output_dir``, to be passed to :class:`PreprocessedSource`.

    Raises
    ------
    ValueError
        Without ``skip_bad``: naming every input that cannot be opened, before anything is
        processed, or the first one whose values are not raw counts.
    """
    if min_genes < 0 or cells_per_shard < 1:
        msg = (
            f"need min_genes >= 0 and cells_per_shard >= 1, got {min_genes} and {cells_per_shard}"
        )
        raise ValueError(msg)
    paths = list_h5ad(inputs)
    out = Path(output_dir)
    shards_dir = out / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    params = {
        "min_genes": min_genes,
        "layer": layer,
        "gene_symbols_key": gene_symbols_key,
        "cells_per_shard": cells_per_shard,
    }
    manifest = _load_or_create(out, params)
    pending = [p for p in paths if not _is_done(manifest, p)]
    for path in pending:
        _forget_input(manifest, str(path))
    pending, prints = drop_known_content(manifest, pending)
    sources, bad = open_inputs(
        pending, layer=layer, gene_symbols_key=gene_symbols_key, skip_bad=skip_bad
    )
    _remove_orphans(shards_dir, manifest)
    manifest["complete"] = False
    write_manifest(out, manifest)
    if sources:
        logger.info("preprocessing %d of %d input files", len(sources), len(paths))
        _process_all(
            sources, prints, manifest, out, params, progress=progress,
            bad=bad if skip_bad else None,
        )  # fmt: skip
    manifest["skipped"] = bad
    manifest["complete"] = True
    write_manifest(out, manifest)
    return out


def _process_all(
    sources: dict[str, H5adDirectorySource],
    prints: dict[str, dict[str, Any]],
    manifest: dict[str, Any],
    out: Path,
    params: dict[str, Any],
    *,
    progress: bool,
    bad: dict[str, str] | None,
) -> None:
    """Process each input into shards, updating the manifest after each one.

    ``bad`` collects inputs that fail while being read (e.g. non-integer values) when bad
    inputs are to be skipped; ``None`` raises on the first one.
    """
    total = sum(s.n_cells for s in sources.values())
    with tqdm(total=total, unit="cell", desc="preprocess", disable=not progress) as bar:
        for path, source in sources.items():
            try:
                record, shards = _process_file(source, path, out / "shards", params, bar)
            except (OSError, KeyError, ValueError) as err:
                reason = describe_read_error(Path(path), err)
                if bad is None:
                    raise ValueError(reason) from err
                bad[path] = reason
                warnings.warn(f"skipping {reason}", UserWarning, stacklevel=4)
                continue
            manifest["inputs"][path] = record | {"sha256": prints[path]["sha256"]}
            manifest["shards"].extend(shards)
            write_manifest(out, manifest)


def _process_file(
    source: H5adDirectorySource, path: str, shards_dir: Path, params: dict[str, Any], bar: tqdm
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem)[:40]
    prefix = f"{stem}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"
    writer = ShardWriter(shards_dir, prefix, params["cells_per_shard"], source=path)
    n_in = n_kept = 0
    bar.set_postfix_str(Path(path).name)
    try:
        for block in source.read_shard(path, block_size=_READ_BLOCK):
            keep = np.diff(block.indptr) >= max(params["min_genes"], 1)
            writer.add(block[keep] if not keep.all() else block)
            n_in, n_kept = n_in + block.shape[0], n_kept + int(keep.sum())
            bar.update(block.shape[0])
        shards = writer.finish()
    except BaseException:
        writer.abort()
        raise
    stat = Path(path).stat()
    alignment = source.alignments[path]
    record = {
        "status": "complete",
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "n_cells_in": n_in,
        "n_cells_kept": n_kept,
        "n_genes_matched": int(alignment["n_matched_positions"]),
        "n_vars": int(alignment["n_vars"]),
        "n_duplicated_vars": int(alignment["n_duplicated_vars"]),
        "shards": [s["id"] for s in shards],
    }
    logger.info("%s: kept %d of %d cells in %d shards", path, n_kept, n_in, len(shards))
    return record, shards


def _load_or_create(out: Path, params: dict[str, Any]) -> dict[str, Any]:
    if not (out / MANIFEST).is_file():
        return new_manifest(**params)
    manifest = read_manifest(out)
    if manifest.get("params") != params:
        msg = (
            f"{out} was preprocessed with {manifest.get('params')}, not {params}; use the same "
            "settings to resume, or a new output directory."
        )
        raise ValueError(msg)
    return manifest


def _is_done(manifest: dict[str, Any], path: Path) -> bool:
    record = manifest["inputs"].get(str(path))
    if record is None or record.get("status") != "complete":
        return False
    stat = path.stat()
    return record["size"] == stat.st_size and record["mtime_ns"] == stat.st_mtime_ns


def _forget_input(manifest: dict[str, Any], path: str) -> None:
    """Drop a stale record (input changed since it was processed) and its shards."""
    if manifest["inputs"].pop(path, None) is None:
        return
    logger.info("%s changed since it was preprocessed; processing it again", path)
    manifest["shards"] = [s for s in manifest["shards"] if s.get("source") != path]


def _remove_orphans(shards_dir: Path, manifest: dict[str, Any]) -> None:
    """Delete temporary shards and shards of inputs that never completed."""
    known = {s["id"] for s in manifest["shards"]}
    for child in shards_dir.iterdir():
        if child.name not in known:
            logger.info("removing unfinished shard %s", child)
            shutil.rmtree(child) if child.is_dir() else child.unlink()
