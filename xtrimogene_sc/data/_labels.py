"""Which cells carry a usable label (shared by label transfer and the fine-tuned classifier)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

UNKNOWN = "Unknown"


def usable_labels(
    obs: pd.DataFrame, labels_key: str, *, min_cells: int = 2, stacklevel: int = 3
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Cells with a usable label: mask, their labels, and the labels dropped as too rare.

    Missing (NaN) and ``"Unknown"`` labels are ignored and labels with fewer than ``min_cells``
    cells dropped, each with a warning; fewer than two remaining labels is a ``ValueError``.
    """
    if labels_key not in obs:
        msg = f"labels_key={labels_key!r} is not an obs column (columns: {list(obs.columns)})"
        raise ValueError(msg)
    raw = obs[labels_key]
    unlabelled = raw.isna().to_numpy() | (raw.astype(str).to_numpy() == UNKNOWN)
    if unlabelled.any():
        msg = (
            f"{int(unlabelled.sum())} cells have no label (NaN or {UNKNOWN!r}) in "
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
