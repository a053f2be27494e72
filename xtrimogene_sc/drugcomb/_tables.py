"""Feature tables of drugs and cell lines, and the lookup of names in them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from xtrimogene_sc.drugcomb._featurize import morgan_fingerprints

if TYPE_CHECKING:
    from anndata import AnnData


def lookup(names: pd.Index, values: pd.Series, what: str) -> np.ndarray:
    """Positions of ``values`` in ``names``; names that are absent are refused, all listed."""
    positions = names.get_indexer(values.astype(str))
    if (positions < 0).any():
        unknown = sorted(set(values.astype(str)[positions < 0]))
        where = "drugs (give its SMILES)" if what == "drug" else "cell_lines AnnData (obs_names)"
        msg = (
            f"{len(unknown)} {what}(s) not in the model's feature table: {unknown[:10]}; "
            f"the model knows {len(names)}. Build the model with them in its {where}, or drop those rows"
        )
        raise ValueError(msg)
    return positions.astype(np.int64)


def drug_features(
    drugs: Mapping[str, str] | pd.Series | pd.DataFrame, *, radius: int, n_bits: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Drugs x features table and how it was made."""
    if isinstance(drugs, pd.DataFrame):
        values = drugs.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            msg = "the drug feature table holds NaN or infinite values"
            raise ValueError(msg)
        return drugs.astype(np.float32), {
            "kind": "custom",
            "columns": list(map(str, drugs.columns)),
        }
    table = morgan_fingerprints(drugs, radius=radius, n_bits=n_bits)
    return table, {"kind": "morgan", "radius": radius, "n_bits": n_bits}


def cell_features(cell_lines: AnnData | None, cell_key: str | None) -> pd.DataFrame | None:
    """Standardised cell-line features from ``obsm[cell_key]`` (``None``: drugs only)."""
    if cell_key is None:
        return None
    if cell_lines is None:
        msg = (
            f"cell_key={cell_key!r} needs an AnnData of cell lines (or cell_key=None: drugs only)"
        )
        raise ValueError(msg)
    if cell_key not in cell_lines.obsm:
        msg = (
            f"cell_key={cell_key!r} is not in cell_lines.obsm (keys: {list(cell_lines.obsm)}); "
            "put the features there, e.g. cells.obsm['X_log_tpm'] = np.log1p(cells.X) or "
            "xtg.tl.embed(cells, model, input_type='bulk') for 'X_xtg'"
        )
        raise KeyError(msg)
    features = cell_lines.obsm[cell_key]
    values = np.asarray(
        features.toarray() if hasattr(features, "toarray") else features, np.float64
    )
    if values.ndim != 2 or not np.isfinite(values).all():
        msg = f"cell_lines.obsm[{cell_key!r}] must be a finite 2-D array"
        raise ValueError(msg)
    if not cell_lines.obs_names.is_unique:
        msg = "cell_lines.obs_names must be unique cell-line names"
        raise ValueError(msg)
    scale = values.std(axis=0)
    values = (values - values.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    return pd.DataFrame(values.astype(np.float32), index=cell_lines.obs_names.astype(str))
