"""Cell source over a TileDB-SOMA experiment (the CELLxGENE Census format).

``tiledbsoma`` is an optional dependency (``pip install 'xtrimogene-sc[soma]'``) imported only when
a :class:`SomaSource` is created. Shards are consecutive runs of ``shard_size`` selected cells in
``soma_joinid`` order; rows are read by joinid in blocks and aligned to the vocabulary.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from xtrimogene_sc.data._tokenize import align_rows
from xtrimogene_sc.data._vocab import GeneVocab

from ._sources import _row_range, validate_counts

logger = logging.getLogger(__name__)

_INSTALL_HINT = "SomaSource needs tiledbsoma: pip install 'xtrimogene-sc[soma]'"


def _import_tiledbsoma() -> Any:
    try:
        import tiledbsoma
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return tiledbsoma


class SomaSource:
    """Cells of a TileDB-SOMA experiment, aligned to the vocabulary on the fly.

    Parameters
    ----------
    uri
        Experiment URI (a local folder, or any URI tiledbsoma can open).
    measurement
        Measurement holding the genes (Census: ``"RNA"``).
    layer
        ``X`` layer with raw counts (Census: ``"raw"``).
    obs_value_filter
        Optional SOMA value filter on ``obs``, e.g. ``"is_primary_data == True"``.
    gene_symbols_column
        ``var`` column with gene symbols (Census: ``"feature_name"``).
    shard_size
        Cells per shard; shards are consecutive runs of selected cells in ``soma_joinid`` order.
    """

    def __init__(
        self,
        uri: str,
        *,
        measurement: str = "RNA",
        layer: str = "raw",
        obs_value_filter: str | None = None,
        gene_symbols_column: str = "feature_name",
        shard_size: int = 65536,
    ) -> None:
        soma = _import_tiledbsoma()
        if shard_size < 1:
            msg = f"shard_size must be >= 1, got {shard_size}"
            raise ValueError(msg)
        self.uri, self.measurement, self.layer = uri, measurement, layer
        with soma.Experiment.open(uri) as exp:
            if measurement not in exp.ms:
                msg = f"{uri}: no measurement {measurement!r}; available: {sorted(exp.ms.keys())}"
                raise ValueError(msg)
            ms = exp.ms[measurement]
            if layer not in ms.X:
                msg = f"{uri}: measurement {measurement!r} has no X layer {layer!r}; available: {sorted(ms.X.keys())}"
                raise ValueError(msg)
            self.n_vars = int(ms.X[layer].shape[1])
            self.var_to_position, self.alignment = self._align(ms, gene_symbols_column)
            self._joinids = self._select(exp, obs_value_filter)
        self.n_cells = len(self._joinids)
        bounds = range(0, self.n_cells, shard_size)
        self._shards = {
            f"obs[{self._joinids[a]}:{self._joinids[min(a + shard_size, self.n_cells) - 1] + 1}]": (
                a,
                min(a + shard_size, self.n_cells),
            )
            for a in bounds
        }

    def _align(self, ms: Any, column: str) -> tuple[np.ndarray, dict[str, int | float]]:
        var = ms.var.read(column_names=["soma_joinid", column]).concat().to_pandas()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                alignment = GeneVocab.default().align(var[column].astype(object).to_numpy())
            except ValueError as err:
                msg = f"{self.uri} (var column {column!r}): {err}"
                raise ValueError(msg) from err
        for w in caught:
            logger.info("%s: %s", self.uri, w.message)
        # var soma_joinid -> vocabulary position (joinids index the X columns)
        positions = np.full(max(self.n_vars, int(var["soma_joinid"].max()) + 1), -1, np.int64)
        positions[var["soma_joinid"].to_numpy()] = alignment.var_to_position
        return positions, alignment.to_dict()

    @staticmethod
    def _select(exp: Any, value_filter: str | None) -> np.ndarray | range:
        if value_filter is None:
            count = int(exp.obs.count)
            domain = exp.obs.non_empty_domain()
            if count and domain and domain[0] and domain[0][1] - domain[0][0] + 1 == count:
                return range(int(domain[0][0]), int(domain[0][1]) + 1)
        table = exp.obs.read(value_filter=value_filter, column_names=["soma_joinid"]).concat()
        return np.sort(table.column("soma_joinid").to_numpy())

    def shard_ids(self) -> list[str]:
        """Shard names ``obs[first_joinid:last_joinid + 1]``, in joinid order."""
        return list(self._shards)

    def shard_size(self, shard_id: str) -> int:
        """Number of selected cells in a shard."""
        a, b = self._shards[shard_id]
        return b - a

    def read_shard(
        self, shard_id: str, *, block_size: int = 4096, start: int = 0, stop: int | None = None
    ) -> Iterator[sp.csr_matrix]:
        """Aligned raw counts of rows ``start:stop`` of a shard, ``block_size`` rows at a time."""
        soma = _import_tiledbsoma()
        first, last = self._shards[shard_id]
        start, stop = _row_range(last - first, start, stop)
        with soma.Experiment.open(self.uri) as exp:
            X = exp.ms[self.measurement].X[self.layer]
            for lo in range(first + start, first + stop, block_size):
                ids = np.asarray(self._joinids[lo : min(lo + block_size, first + stop)], np.int64)
                table = X.read(coords=(ids,)).tables().concat()
                rows = np.searchsorted(ids, table.column("soma_dim_0").to_numpy())
                cols = table.column("soma_dim_1").to_numpy()
                data = table.column("soma_data").to_numpy()
                validate_counts(
                    data,
                    f"{self.uri} layer {self.layer!r}, joinids {ids[0]}-{ids[-1]}",
                    hint="Pass layer='<X layer with raw counts>'.",
                )
                block = sp.csr_matrix(
                    (data, (rows, cols)), shape=(len(ids), len(self.var_to_position))
                )
                yield align_rows(block, self.var_to_position).astype(np.float32)
