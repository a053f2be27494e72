"""Checks of ``obs`` columns used as labels or batches: missing values, in any spelling."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

#: Text that stands for a missing value, e.g. after ``astype(str)`` turned NaN into ``"nan"``.
MISSING_TEXT = frozenset({"", "nan", "none", "null", "<na>"})


def missing_label_masks(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Two boolean masks over ``values``: true missing values (NaN/None), and missing-looking text.

    Text masks are case-insensitive and ignore surrounding spaces: ``"nan"``, ``"NaN"``,
    ``"None"``, ``"null"``, ``"<NA>"`` and ``""``.
    """
    missing = values.isna().to_numpy()
    text = values.astype(object).map(
        lambda v: isinstance(v, str) and v.strip().lower() in MISSING_TEXT
    )
    return missing, text.to_numpy(dtype=bool) & ~missing


def check_obs_key(adata: Any, key: str | None, role: str, *, stacklevel: int = 3) -> None:
    """Refuse a missing column or NaN values of ``adata.obs[key]``; warn about ``"nan"`` text.

    Parameters
    ----------
    adata
        The AnnData.
    key
        ``obs`` column (``None``: nothing to check).
    role
        The argument name, for messages (``"labels_key"``, ``"batch_key"``).
    stacklevel
        Of the warning.

    Raises
    ------
    ValueError
        ``key`` is not a column of ``adata.obs``, or the column has missing values, which
        scvi-tools cannot register as a category.
    """
    if key is None:
        return
    if key not in adata.obs.columns:
        msg = f"{role}={key!r} is not a column of adata.obs (columns: {list(adata.obs.columns)})"
        raise ValueError(msg)
    missing, text = missing_label_masks(adata.obs[key])
    if missing.any():
        msg = (
            f"adata.obs[{key!r}] has {int(missing.sum()):,} of {len(missing):,} cells with a missing "
            f"(NaN) value, which cannot be registered as a category. Drop those cells "
            f"(adata = adata[adata.obs[{key!r}].notna()].copy()) or give them a value, e.g. "
            f"adata.obs[{key!r}] = adata.obs[{key!r}].astype(object).fillna('Unknown')"
        )
        raise ValueError(msg)
    if text.any():
        found = sorted({str(v) for v in adata.obs[key][text]})
        msg = (
            f"adata.obs[{key!r}] has {int(text.sum()):,} cells labelled {found}, which looks like a "
            "missing value turned into text (e.g. by astype(str)); it is registered as a category "
            "of its own. Set those cells to NaN and drop them, or name them 'Unknown' (which "
            "label transfer and the classifier ignore)"
        )
        warnings.warn(msg, UserWarning, stacklevel=stacklevel)
