"""Cell sources for pretraining: shards of raw counts aligned to the 19,264-gene vocabulary.

A source is a list of shards (an h5ad file, a preprocessed shard directory, a range of a SOMA
experiment). Each shard is read in contiguous row blocks, so memory is bounded by one block
whatever the corpus size; every block comes out aligned: ``(n, 19264)`` float32 CSR raw counts,
sorted unique column indices, duplicated symbols summed and genes outside the vocabulary dropped.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data._tokenize import align_rows
from xtrimogene_sc.data._vocab import GeneVocab

from ._manifest import read_manifest

logger = logging.getLogger(__name__)

_INT_TOL = 1e-4
_LAYER_HINT = (
    "Pass layer='<name>' for a raw-count layer, or layer='raw' for adata.raw.X "
    "(CELLxGENE files keep raw counts there)."
)


@runtime_checkable
class CellSource(Protocol):
    """A sharded corpus of cells whose blocks are raw counts aligned to the vocabulary."""

    n_cells: int

    def shard_ids(self) -> list[str]:
        """Identifiers of all shards, in a fixed order."""

    def shard_size(self, shard_id: str) -> int:
        """Number of cells (rows) of a shard."""

    def read_shard(
        self, shard_id: str, *, block_size: int = 4096, start: int = 0, stop: int | None = None
    ) -> Iterator[sp.csr_matrix]:
        """Yield rows ``start:stop`` of a shard in file order, ``block_size`` rows at a time."""


def validate_counts(values: np.ndarray, where: str, hint: str = _LAYER_HINT) -> None:
    """Raise a ``ValueError`` naming ``where`` unless ``values`` are finite non-negative integers."""
    if values.size == 0:
        return
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values)
        if bad.any():
            msg = f"{where}: {int(bad.sum()):,} NaN or infinite values; raw counts are needed. {hint}"
            raise ValueError(msg)
        nonint = np.abs(values - np.round(values)) > _INT_TOL
        if nonint.any():
            example = float(values[nonint][0])
            looks = " and looks log-normalised" if float(values.max()) < 30 else ""
            msg = (
                f"{where}: {int(nonint.sum()):,} non-integer values (e.g. {example:.4g}){looks}; "
                f"xTrimoGene pretraining needs raw counts. {hint}"
            )
            raise ValueError(msg)
    if (values < 0).any():
        msg = f"{where}: negative values (minimum {float(values.min()):.4g}); raw counts are needed. {hint}"
        raise ValueError(msg)


def _row_range(n_rows: int, start: int, stop: int | None) -> tuple[int, int]:
    stop = n_rows if stop is None else min(stop, n_rows)
    if not 0 <= start <= stop:
        msg = f"invalid row range {start}:{stop} for a shard of {n_rows} rows"
        raise ValueError(msg)
    return start, stop


# --------------------------------------------------------------------------------------- h5ad
@dataclass(frozen=True)
class _H5adShard:
    path: Path
    key: str  # HDF5 path of the count matrix
    n_obs: int
    sparse: bool
    var_to_position: np.ndarray


def _matrix_key(f: h5py.File, path: Path, layer: str | None) -> tuple[str, str]:
    """HDF5 path of the matrix and of its var table."""
    if layer is None:
        return "X", "var"
    if layer == "raw":
        if "raw/X" not in f:
            msg = f"{path}: layer='raw' was requested but the file has no adata.raw."
            raise ValueError(msg)
        return "raw/X", "raw/var"
    if f"layers/{layer}" not in f:
        layers = sorted(f["layers"].keys()) if "layers" in f else []
        msg = f"{path}: no layer {layer!r}; available layers: {layers} (or 'raw' / None for X)."
        raise ValueError(msg)
    return f"layers/{layer}", "var"


def _inspect_h5ad(
    path: Path, layer: str | None, gene_symbols_key: str | None, min_gene_overlap: float
) -> tuple[_H5adShard, dict[str, int | float]]:
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        msg = f"{path}: not a readable .h5ad (HDF5) file, or truncated/damaged ({err})"
        raise ValueError(msg) from err
    with handle as f:
        key, var_key = _matrix_key(f, path, layer)
        node = f[key]
        if isinstance(node, h5py.Dataset):
            shape, sparse = tuple(node.shape), False
        else:
            encoding = node.attrs.get("encoding-type", node.attrs.get("h5sparse_format", ""))
            encoding = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
            if not encoding.startswith("csr"):
                msg = (
                    f"{path}: the count matrix is stored as {encoding or 'an unknown format'}; "
                    "row blocks need CSR. Rewrite it: adata.X = adata.X.tocsr(); adata.write_h5ad(...)."
                )
                raise ValueError(msg)
            shape, sparse = tuple(int(s) for s in node.attrs["shape"]), True
        var = ad.io.read_elem(f[var_key])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            alignment = GeneVocab.default().align(
                ad.AnnData(var=var),
                gene_symbols_key=gene_symbols_key,
                min_overlap=min_gene_overlap,
            )
        except ValueError as err:
            msg = f"{path}: {err}"
            raise ValueError(msg) from err
    for w in caught:
        logger.info("%s: %s", path, w.message)
    if shape[1] != alignment.n_vars:
        msg = f"{path}: matrix has {shape[1]} columns but var has {alignment.n_vars} rows."
        raise ValueError(msg)
    shard = _H5adShard(path, key, int(shape[0]), sparse, alignment.var_to_position)
    return shard, alignment.to_dict()


class H5adDirectorySource:
    """Cells of many ``.h5ad`` files, one shard per file, read backed in row blocks.

    Parameters
    ----------
    paths_or_dir
        A directory (all ``*.h5ad`` inside, sorted by name) or a sequence of h5ad paths.
    layer
        Raw-count layer to read; ``None`` reads ``X`` and ``"raw"`` reads ``raw/X`` (with ``raw/var``).
    gene_symbols_key
        Column of ``var`` holding gene symbols (e.g. ``"feature_name"`` when var names are Ensembl IDs).
    min_gene_overlap
        Minimum fraction of a file's genes that must match the vocabulary; smaller overlap raises.

    Notes
    -----
    Every file's genes are aligned when the source is built; counts are validated block by block
    while reading. Both raise a ``ValueError`` that names the file.
    """

    def __init__(
        self,
        paths_or_dir: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        layer: str | None = None,
        gene_symbols_key: str | None = None,
        min_gene_overlap: float = 0.25,
    ) -> None:
        paths = list_h5ad(paths_or_dir)
        self.layer = layer
        self._shards: dict[str, _H5adShard] = {}
        self.alignments: dict[str, dict[str, int | float]] = {}
        for path in paths:
            shard, summary = _inspect_h5ad(path, layer, gene_symbols_key, min_gene_overlap)
            self._shards[str(path)] = shard
            self.alignments[str(path)] = summary
        self.n_cells = sum(s.n_obs for s in self._shards.values())

    def shard_ids(self) -> list[str]:
        """File paths, in sorted order."""
        return list(self._shards)

    def shard_size(self, shard_id: str) -> int:
        """Number of cells of a file."""
        return self._shards[shard_id].n_obs

    def read_shard(
        self, shard_id: str, *, block_size: int = 4096, start: int = 0, stop: int | None = None
    ) -> Iterator[sp.csr_matrix]:
        """Aligned raw counts of rows ``start:stop`` of one file, ``block_size`` rows at a time."""
        shard = self._shards[shard_id]
        start, stop = _row_range(shard.n_obs, start, stop)
        where = f"{shard.path} ({'X' if self.layer is None else f'layer {self.layer!r}'})"
        with h5py.File(shard.path, "r") as f:
            node = f[shard.key]
            indptr = node["indptr"][start : stop + 1] if shard.sparse else None
            for lo in range(start, stop, block_size):
                hi = min(lo + block_size, stop)
                if indptr is None:
                    block = sp.csr_matrix(np.asarray(node[lo:hi]))
                else:
                    ptr = indptr[lo - start : hi - start + 1]
                    a, b = int(ptr[0]), int(ptr[-1])
                    block = sp.csr_matrix(
                        (node["data"][a:b], node["indices"][a:b], ptr - a),
                        shape=(hi - lo, len(shard.var_to_position)),
                    )
                validate_counts(block.data, f"{where}, rows {lo}-{hi}")
                yield align_rows(block, shard.var_to_position).astype(np.float32)


def list_h5ad(paths_or_dir: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Resolve a directory or a list of paths to existing ``.h5ad`` files (sorted for directories)."""
    if isinstance(paths_or_dir, str | os.PathLike):
        root = Path(paths_or_dir)
        if root.is_dir():
            paths = sorted(root.glob("*.h5ad"))
            if not paths:
                msg = f"no .h5ad files in {root}"
                raise ValueError(msg)
            return [p.resolve() for p in paths]
        paths_or_dir = [root]
    paths = [Path(p).resolve() for p in paths_or_dir]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        msg = f"h5ad files not found: {missing[:5] or 'empty list'}"
        raise FileNotFoundError(msg)
    if len(set(paths)) != len(paths):
        msg = "the same h5ad file is listed more than once"
        raise ValueError(msg)
    return paths


# ------------------------------------------------------------------------ preprocessed format
ARRAYS = {"indptr": np.dtype("<i8"), "indices": np.dtype("<u2"), "data": np.dtype("<f4")}


class _NpyReader:
    """Reads of row ranges from a 1-D ``.npy`` file (no memory map, so the RSS stays flat)."""

    def __init__(self, path: Path) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 (closed by close())
        version = np.lib.format.read_magic(self._fh)
        reader = np.lib.format.read_array_header_1_0
        if version != (1, 0):
            reader = np.lib.format.read_array_header_2_0
        shape, _, self.dtype = reader(self._fh)
        self.length = int(shape[0])
        self._offset = self._fh.tell()

    def read(self, start: int, stop: int) -> np.ndarray:
        self._fh.seek(self._offset + start * self.dtype.itemsize)
        raw = self._fh.read((stop - start) * self.dtype.itemsize)
        return np.frombuffer(raw, dtype=self.dtype)

    def close(self) -> None:
        self._fh.close()


class PreprocessedSource:
    """Shards written by :func:`~xtrimogene_sc.pretrain.preprocess_h5ad` (the fastest format).

    Parameters
    ----------
    directory
        Output directory of the preprocessing (holds ``manifest.json``).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        if not self.manifest.get("complete", False):
            msg = (
                f"{self.directory} is an incomplete preprocessing run; reading the "
                f"{len(self.manifest['shards'])} shards finished so far. Rerun the preprocessing to resume."
            )
            warnings.warn(msg, UserWarning, stacklevel=2)
        self._shards = {s["id"]: s for s in self.manifest["shards"]}
        self.n_cells = sum(int(s["n_cells"]) for s in self._shards.values())

    def shard_ids(self) -> list[str]:
        """Shard names in manifest order."""
        return list(self._shards)

    def shard_size(self, shard_id: str) -> int:
        """Number of cells of a shard."""
        return int(self._shards[shard_id]["n_cells"])

    def read_shard(
        self, shard_id: str, *, block_size: int = 4096, start: int = 0, stop: int | None = None
    ) -> Iterator[sp.csr_matrix]:
        """Aligned raw counts of rows ``start:stop`` of one shard, ``block_size`` rows at a time."""
        folder = self.directory / self._shards[shard_id]["path"]
        start, stop = _row_range(self.shard_size(shard_id), start, stop)
        readers = {name: _NpyReader(folder / f"{name}.npy") for name in ARRAYS}
        try:
            for name, reader in readers.items():
                if reader.dtype != ARRAYS[name] and not (name == "data" and reader.dtype == "<u4"):
                    msg = f"{folder}/{name}.npy has dtype {reader.dtype}, expected {ARRAYS[name]}"
                    raise ValueError(msg)
            indptr = readers["indptr"].read(start, stop + 1)
            for lo in range(0, stop - start, block_size):
                ptr = indptr[lo : lo + block_size + 1]
                a, b = int(ptr[0]), int(ptr[-1])
                yield sp.csr_matrix(
                    (
                        readers["data"].read(a, b).astype(np.float32),
                        readers["indices"].read(a, b).astype(np.int32),
                        ptr - a,
                    ),
                    shape=(len(ptr) - 1, TOKENS.N_GENES),
                )
        finally:
            for reader in readers.values():
                reader.close()
