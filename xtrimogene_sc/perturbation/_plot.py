"""Predicted against observed perturbation responses (scanpy conventions: ``show``/``ax``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xtrimogene_sc.perturbation._metrics import delta_scores, paired_changes

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes


def perturbation_response(
    adata: AnnData,
    *,
    observed: AnnData,
    condition: str,
    cell_type: str | None = None,
    n_top_de: int = 20,
    ax: Axes | None = None,
    show: bool = True,
) -> Axes | None:
    """Scatter of predicted against observed change from control, one point per gene.

    The ``n_top_de`` genes with the largest observed change are drawn in colour and named; the
    title gives the Pearson correlation of the changes over all genes and over those genes.

    Parameters
    ----------
    adata
        Predictions (see :func:`~xtrimogene_sc.tl.perturbation_metrics`).
    observed
        Raw counts of the observed perturbed and control cells.
    condition
        The condition to draw, as named in the predictions (``"KLF1+MAP2K6"``).
    cell_type
        The cell type to draw, if the predictions have several.
    n_top_de
        Number of highlighted genes.
    ax
        Axes to draw into; a new figure otherwise.
    show
        Show the figure; otherwise return the axes.

    Returns
    -------
    The axes when ``show=False``.
    """
    import matplotlib.pyplot as plt

    wanted = tuple(sorted(set(condition.split("+"))))
    changes = [
        c
        for c in paired_changes(adata, observed=observed)
        if c.condition in (wanted, (condition,)) and cell_type in (None, c.cell_type)
    ]
    if len(changes) != 1:
        found = sorted(
            {
                ("+".join(c.condition), c.cell_type)
                for c in paired_changes(adata, observed=observed)
            }
        )
        msg = (
            f"need exactly one observed and predicted group for condition={condition!r}, "
            f"cell_type={cell_type!r}; found {len(changes)} (available: {found[:8]})"
        )
        raise ValueError(msg)
    change = changes[0]
    predicted, observed_delta = change.predicted - change.control, change.observed - change.control
    de = np.argsort(-np.abs(observed_delta), kind="stable")[:n_top_de]
    scores = delta_scores(change.predicted, change.observed, change.control, n_top_de=n_top_de)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(observed_delta, predicted, s=6, c="#b0b0b0", linewidths=0, label="all genes")
    ax.scatter(observed_delta[de], predicted[de], s=18, c="#d62728", label=f"top {n_top_de} DE")
    for i in de[:8]:
        ax.annotate(str(adata.var_names[i]), (observed_delta[i], predicted[i]), fontsize=7)
    low = float(min(observed_delta.min(), predicted.min()))
    high = float(max(observed_delta.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="black", linewidth=0.7, linestyle="--")
    ax.axhline(0, color="#808080", linewidth=0.5)
    ax.axvline(0, color="#808080", linewidth=0.5)
    ax.set_xlabel("observed change from control")
    ax.set_ylabel("predicted change from control")
    title = condition if change.cell_type == "all" else f"{condition} in {change.cell_type}"
    ax.set_title(
        f"{title}\nPearson {scores['pearson_delta']:.2f} (all), "
        f"{scores['pearson_delta_de']:.2f} (DE)",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left")
    if show:
        plt.show()
        return None
    return ax
