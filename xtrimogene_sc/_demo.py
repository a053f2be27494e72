"""The bundled end-to-end demo: pretrain, embed, cluster, annotate, plot, save."""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def run_demo(
    out_dir: str | Path = "xtg_demo",
    *,
    epochs: int | None = None,
    preset: str | None = None,
    decoder_mode: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the whole workflow on the bundled PBMC data and write its results to ``out_dir``.

    Steps: recover counts from scanpy's ``pbmc68k_reduced``; pretrain a model from scratch with
    :data:`~xtrimogene_sc.model.SMALL_DATA_RECIPE` (``epochs``, ``preset`` and
    ``decoder_mode`` override it); embed the cells into ``obsm["X_xtg"]``; score the embedding
    and a PCA of the log-normalised counts on the same cells
    (:func:`~xtrimogene_sc.tl.score_embedding`: kNN accuracy and Leiden ARI against
    ``bulk_labels``) and print them side by side; neighbours, Leiden and UMAP with scanpy;
    transfer ``bulk_labels`` from a random half of the cells to the other half with
    :func:`xtrimogene_sc.tl.annotate`; save the AnnData (``pbmc_xtg.h5ad``), a UMAP figure
    (``umap.png``), the model (``model/``) and the metrics (``metrics.json``).

    Returns
    -------
    The metrics written to ``metrics.json``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc
    import torch

    import xtrimogene_sc as xtg
    from xtrimogene_sc.tl._scores import pca_reference

    recipe = demo_recipe(epochs=epochs, preset=preset, decoder_mode=decoder_mode)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    adata = xtg.datasets.pbmc68k_counts()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*vocabulary genes.*")
        xtg.XTrimoGene.setup_anndata(adata)
        model = recipe.build(adata)
    logger.info("%s", model._model_summary_string)
    mse_before = model.get_reconstruction_error()
    start = time.perf_counter()
    with _quiet_lightning():
        model.train(**recipe.train_kwargs(adata.n_obs))
    train_seconds = time.perf_counter() - start
    mse_after = model.get_reconstruction_error()

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*vocabulary genes.*")
        xtg.tl.embed(adata, model)  # the recipe's pooling, the model's default
    adata.obsm["X_pca"] = pca_reference(adata, seed=seed)
    scores = {
        rep: xtg.tl.score_embedding(adata, use_rep=rep, labels_key="bulk_labels", seed=seed)
        for rep in ("X_xtg", "X_pca")
    }
    sc.pp.neighbors(adata, use_rep="X_xtg", random_state=seed)
    sc.tl.leiden(adata, key_added="xtg_leiden", flavor="igraph", n_iterations=2, random_state=seed)
    sc.tl.umap(adata, random_state=seed)
    annotation = _transfer_labels(adata, seed=seed)

    metrics = {
        "n_cells": int(adata.n_obs),
        "model": model._model_summary_string,
        "recipe": asdict(recipe),
        "train_seconds": round(train_seconds, 1),
        "masked_mse_before": round(mse_before, 4),
        "masked_mse_after": round(mse_after, 4),
        "xtg_knn_accuracy": round(scores["X_xtg"]["knn_accuracy"], 4),
        "xtg_leiden_ari": round(scores["X_xtg"]["leiden_ari"], 4),
        "pca_knn_accuracy": round(scores["X_pca"]["knn_accuracy"], 4),
        "pca_leiden_ari": round(scores["X_pca"]["leiden_ari"], 4),
        **annotation,
    }
    _match_label_colors(adata, truth="bulk_labels", predicted="xtg_label")
    adata.write_h5ad(out / "pbmc_xtg.h5ad")
    model.save(out / "model", overwrite=True)
    fig = sc.pl.umap(adata, color=["bulk_labels", "xtg_leiden", "xtg_label"], show=False,
                     return_fig=True, wspace=0.45)  # fmt: skip
    fig.savefig(out / "umap.png", dpi=120, bbox_inches="tight")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def demo_recipe(
    *, epochs: int | None = None, preset: str | None = None, decoder_mode: str | None = None
) -> Any:
    """:data:`~xtrimogene_sc.model.SMALL_DATA_RECIPE` with the demo's overrides (``None``: keep).

    A ``preset`` comes whole: its own encoder depth replaces the recipe's single layer.
    """
    from xtrimogene_sc.model import SMALL_DATA_RECIPE

    overrides = {"epochs": epochs, "preset": preset, "decoder_mode": decoder_mode}
    recipe = replace(SMALL_DATA_RECIPE, **{k: v for k, v in overrides.items() if v is not None})
    return recipe if preset is None else replace(recipe, encoder_depth=None)


def _match_label_colors(adata: Any, *, truth: str, predicted: str) -> None:
    """Colour each predicted label like the same true label (``Unknown`` grey).

    The two panels of the UMAP can then be compared at a glance.
    """
    import pandas as pd
    import scanpy as sc

    truth_labels = list(adata.obs[truth].astype("category").cat.categories)
    palette = sc.pl.palettes.default_20 if len(truth_labels) <= 20 else sc.pl.palettes.default_102
    colors = dict(zip(truth_labels, palette, strict=False))
    adata.uns[f"{truth}_colors"] = [colors[label] for label in truth_labels]
    present = set(adata.obs[predicted].astype(str))
    order = [label for label in truth_labels if label in present]
    order += sorted(present - set(order))  # "Unknown" and anything else last
    adata.obs[predicted] = pd.Categorical(adata.obs[predicted].astype(str), categories=order)
    adata.uns[f"{predicted}_colors"] = [colors.get(label, "#bbbbbb") for label in order]


def comparison_table(metrics: dict[str, Any]) -> str:
    """The demo's embedding beside PCA's on the same cells, as a small text table."""
    rows = [("xTrimoGene (this run)", "xtg"), ("PCA, 50 components", "pca")]
    lines = [
        "embedding of the 700 PBMCs     kNN accuracy (5-fold)   Leiden ARI vs bulk_labels",
        *(
            f"{name:30s} {metrics[f'{key}_knn_accuracy']:>21.3f} {metrics[f'{key}_leiden_ari']:>27.3f}"
            for name, key in rows
        ),
    ]
    return "\n".join(lines)


def _transfer_labels(adata: Any, *, seed: int) -> dict[str, Any]:
    """Transfer ``bulk_labels`` with :func:`xtrimogene_sc.tl.annotate` from half of the cells."""
    import pandas as pd

    import xtrimogene_sc as xtg

    is_reference = np.random.default_rng(seed).random(adata.n_obs) < 0.5
    reference, query = adata[is_reference].copy(), adata[~is_reference].copy()
    xtg.tl.annotate(query, reference=reference, labels_key="bulk_labels", use_rep="X_xtg")
    labels = adata.obs["bulk_labels"].astype(str)
    predicted = labels.copy()
    predicted[~is_reference] = query.obs["xtg_label"].astype(str).to_numpy()
    confidence = pd.Series(1.0, index=adata.obs_names)
    confidence[~is_reference] = query.obs["xtg_label_confidence"].to_numpy()
    adata.obs["xtg_label"] = pd.Categorical(predicted)
    adata.obs["xtg_label_confidence"] = confidence
    adata.obs["xtg_reference"] = is_reference
    truth = labels[~is_reference].to_numpy()
    called = query.obs["xtg_label"].astype(str).to_numpy()
    known = called != "Unknown"
    return {
        "label_transfer_accuracy_on_held_out_half": round(float((called == truth).mean()), 4),
        "label_transfer_unknown_fraction": round(float(1 - known.mean()), 4),
        "label_transfer_accuracy_on_called_cells": round(
            float((called == truth)[known].mean()), 4
        ),
    }


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Hold back Lightning's start-up notices while the demo trains.

    They are the accelerators found, a logging-service tip and Lightning's own deprecations;
    the demo's reader came for the scores. Warnings and errors still show.
    """
    from xtrimogene_sc.train._plan import lightning_notices_ignored

    lightning_logger = logging.getLogger("lightning.pytorch")
    level = lightning_logger.level
    lightning_logger.setLevel(logging.WARNING)
    try:
        with lightning_notices_ignored():
            yield
    finally:
        lightning_logger.setLevel(level)
