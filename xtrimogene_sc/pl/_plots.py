"""Plots for annotation results and training runs (scanpy conventions: ``show``/``ax``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from xtrimogene_sc._constants import DEFAULT_KEYS
from xtrimogene_sc.data._labels import UNKNOWN

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_UNKNOWN_COLOR = "#d3d3d3"


def umap_annotation(
    adata: AnnData,
    *,
    key: str = DEFAULT_KEYS.LABEL,
    show: bool = True,
    **kwargs: Any,
) -> Figure | None:
    """UMAP coloured by the predicted label and by its confidence (two panels).

    Parameters
    ----------
    adata
        Annotated data with ``obsm["X_umap"]`` and the output of
        :func:`~xtrimogene_sc.tl.annotate`.
    key
        ``key_added`` of the annotation; ``obs[f"{key}_confidence"]`` is the second panel.
    show
        Show the figure; otherwise return it.
    **kwargs
        Passed to :func:`scanpy.pl.umap` (e.g. ``size``, ``legend_loc``).

    Returns
    -------
    The figure when ``show=False``.
    """
    import matplotlib.pyplot as plt
    import scanpy as sc

    if "X_umap" not in adata.obsm:
        msg = (
            "adata.obsm['X_umap'] is missing; compute it first, e.g. "
            "sc.pp.neighbors(adata, use_rep='X_xtg'); sc.tl.umap(adata)"
        )
        raise ValueError(msg)
    confidence = f"{key}_confidence"
    missing = [k for k in (key, confidence) if k not in adata.obs]
    if missing:
        msg = f"obs columns {missing} are missing; run xtg.tl.annotate(..., key_added={key!r})"
        raise ValueError(msg)
    kwargs.setdefault("color_map", "viridis")
    kwargs.setdefault("wspace", 0.75)  # room for the long legends of cell-type names
    _grey_unknown(adata, key)
    fig = sc.pl.umap(
        adata, color=[key, confidence], vmin=0.0, vmax=1.0, show=False, return_fig=True, **kwargs
    )
    if show:
        plt.show()
        return None
    return fig


def _grey_unknown(adata: AnnData, key: str) -> None:
    """Store label colours with ``"Unknown"`` in grey (scanpy reads ``uns[f"{key}_colors"]``)."""
    from scanpy.plotting import palettes

    labels = adata.obs[key]
    if not isinstance(labels.dtype, pd.CategoricalDtype) or UNKNOWN not in labels.cat.categories:
        return
    categories = list(labels.cat.categories)
    stored = adata.uns.get(f"{key}_colors")
    if stored is not None and len(stored) == len(categories):
        return
    palette = palettes.default_20 if len(categories) <= 20 else palettes.default_102
    colors = iter(palette)
    adata.uns[f"{key}_colors"] = [
        _UNKNOWN_COLOR if c == UNKNOWN else next(colors) for c in categories
    ]


def confusion_matrix(
    adata: AnnData,
    *,
    true_key: str,
    pred_key: str = DEFAULT_KEYS.LABEL,
    normalize: bool = True,
    ax: Axes | None = None,
    show: bool = True,
) -> Axes | None:
    """Heatmap of known (rows) against predicted (columns) labels.

    Parameters
    ----------
    adata
        Annotated data with both ``obs`` columns.
    true_key
        ``obs`` column of known labels.
    pred_key
        ``obs`` column of predicted labels (``"Unknown"`` calls get their own column).
    normalize
        Show each row as fractions of its known label (recall on the diagonal); otherwise counts.
    ax
        Axes to draw into; a new figure otherwise.
    show
        Show the figure; otherwise return the axes.

    Returns
    -------
    The axes when ``show=False``.
    """
    import matplotlib.pyplot as plt

    table = confusion_table(adata, true_key=true_key, pred_key=pred_key, normalize=normalize)
    if ax is None:
        size = 0.45 * max(table.shape) + 2.5
        _, ax = plt.subplots(figsize=(size + 1.5, size), layout="constrained")
    image = ax.imshow(table.to_numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.figure.colorbar(image, ax=ax, label="fraction of known label" if normalize else "cells")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=90)
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.set_xlabel(f"predicted ({pred_key})")
    ax.set_ylabel(f"known ({true_key})")
    threshold = 0.5 * np.nanmax(table.to_numpy()) if table.size else 0
    for (i, j), value in np.ndenumerate(table.to_numpy()):
        if value:
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            color = "white" if value > threshold else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
    if show:
        plt.show()
        return None
    return ax


def confusion_table(
    adata: AnnData, *, true_key: str, pred_key: str, normalize: bool = True
) -> pd.DataFrame:
    """Known x predicted counts (or row fractions); shared labels first, in the same order."""
    for key in (true_key, pred_key):
        if key not in adata.obs:
            msg = f"adata.obs has no column {key!r}"
            raise ValueError(msg)
    known = adata.obs[true_key].astype(str)
    predicted = adata.obs[pred_key].astype(str)
    table = pd.crosstab(known, predicted)
    rows = list(table.index)
    columns = [c for c in rows if c in table.columns]
    columns += [c for c in table.columns if c not in rows]
    table = table.reindex(index=rows, columns=columns, fill_value=0)
    if normalize:
        table = table.div(table.sum(axis=1).replace(0, 1), axis=0)
    return table


def training_curves(
    model_or_history: Any,
    *,
    ax: Axes | None = None,
    show: bool = True,
) -> Axes | None:
    """Training and validation loss per epoch.

    Parameters
    ----------
    model_or_history
        A trained :class:`~xtrimogene_sc.XTrimoGene` (``model.history``), an
        :class:`~xtrimogene_sc.model.XTrimoGeneClassifier` (``classifier.history``), or the
        history itself: a DataFrame, or a dict of sequences or one-column DataFrames.
    ax
        Axes to draw into; a new figure otherwise.
    show
        Show the figure; otherwise return the axes.

    Returns
    -------
    The axes when ``show=False``; one line per available loss curve.
    """
    import matplotlib.pyplot as plt

    curves = _loss_curves(model_or_history)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    for name, values in curves.items():
        ax.plot(np.arange(len(values)), values, marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    if show:
        plt.show()
        return None
    return ax


def _loss_curves(source: Any) -> dict[str, np.ndarray]:
    history = getattr(source, "history", source)
    if history is None:
        history = {}
    if isinstance(history, pd.DataFrame):
        history = {c: history[c] for c in history.columns}
    curves = {}
    for name in ("train_loss", "validation_loss", "train_loss_epoch"):
        values = history.get(name) if hasattr(history, "get") else None
        if values is None:
            continue
        if isinstance(values, pd.DataFrame):
            values = values.iloc[:, 0]
        array = np.asarray(values, dtype=np.float64).ravel()
        if np.isfinite(array).any():
            curves[name.removesuffix("_epoch")] = array
    if not curves:
        msg = "no train_loss / validation_loss history found; train the model first"
        raise ValueError(msg)
    return curves
