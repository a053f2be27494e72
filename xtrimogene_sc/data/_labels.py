"""Labels in ``obs``: usable labels for label transfer and the classifier; setup checks.

Missing values are recognised in any spelling: NaN/None, and text such as ``"nan"``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

UNKNOWN = "Unknown"
#: Text that stands for a missing value, e.g. after ``astype(str)`` turned NaN into ``"nan"``.
MISSING_TEXT = frozenset({"", "nan", "none", "null", "<na>"})


def usable_labels(
    obs: pd.DataFrame, labels_key: str, *, min_cells: int = 2, stacklevel: int = 3
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Cells with a usable label: mask, their labels, and the labels dropped as too rare.

    Missing labels (NaN, or text such as ``"nan"`` left by ``astype(str)``) and ``"Unknown"``
    are ignored and labels with fewer than ``min_cells``
    cells dropped, each with a warning; fewer than two remaining labels is a ``ValueError``.
    """
    if labels_key not in obs:
        msg = f"labels_key={labels_key!r} is not an obs column (columns: {list(obs.columns)})"
        raise ValueError(msg)
    raw = obs[labels_key]
    missing, as_text = missing_label_masks(raw)
    unlabelled = missing | as_text | (raw.astype(str).to_numpy() == UNKNOWN)
    if unlabelled.any():
        text = sorted({str(v) for v in raw[as_text]})
        msg = (
            f"{int(unlabelled.sum())} cells have no label (NaN or {UNKNOWN!r}"
            f"{f', or the text {text} of a missing value' if text else ''}) in "
            f"obs[{labels_key!r}]; they are ignored"
        )
        warnings.warn(msg, UserWarning, stacklevel=stacklevel)
    labels = raw.astype(str).to_numpy()
    counts = pd.Series(labels[~unlabelled]).value_counts()
    rare = sorted(counts.index[counts < min_cells])
    if rare:
        msg = (
            f"labels with fewer than {min_cells} cells are dropped: "
            + ", ".join(f"{label!r} ({counts[label]} cells)" for label in rare)
            + "; add cells of these types or lower min_cells_per_label"
        )
        warnings.warn(msg, UserWarning, stacklevel=stacklevel)
    keep = ~unlabelled & ~np.isin(labels, rare)
    if len(np.unique(labels[keep])) < 2:
        msg = (
            f"need at least two labels with >= {min_cells} cells each in obs[{labels_key!r}]; "
            f"found {counts.to_dict()}"
        )
        raise ValueError(msg)
    return keep, labels[keep], [str(label) for label in rare]


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
