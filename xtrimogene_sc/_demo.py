"""The bundled end-to-end demo: pretrain, embed, cluster, annotate, plot, save."""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def run_demo(
    out_dir: str | Path = "xtg_demo",
    *,
    epochs: int = 10,
    preset: str = "tiny",
    decoder_mode: str = "masked",
    seed: int = 0,
) -> dict[str, Any]:
    """Run the whole workflow on the bundled PBMC data and write its results to ``out_dir``.

    Steps: recover counts from scanpy's ``pbmc68k_reduced``; pretrain a model by masked
    regression; embed the cells into ``obsm["X_xtg"]``; neighbours, Leiden and UMAP with scanpy;
    transfer ``bulk_labels`` from a random half of the cells to the other half; save the AnnData
    (``pbmc_xtg.h5ad``), a UMAP figure (``umap.png``), the model (``model/``) and the metrics
    (``metrics.json``).

    Returns
    -------
    The metrics written to ``metrics.json``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc
    import torch
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    import xtrimogene_sc as xtg

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    adata = xtg.datasets.pbmc68k_counts()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*vocabulary genes.*")
        xtg.XTrimoGene.setup_anndata(adata)
        model = xtg.XTrimoGene(adata, preset=preset, decoder_mode=decoder_mode)
    logger.info("%s", model._model_summary_string)
    mse_before = model.get_reconstruction_error()
    start = time.perf_counter()
    model.train(max_epochs=epochs, batch_size=32, lr=1e-3)
    train_seconds = time.perf_counter() - start
    mse_after = model.get_reconstruction_error()

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*vocabulary genes.*")
        xtg.tl.embed(adata, model)
    sc.pp.neighbors(adata, use_rep="X_xtg", random_state=seed)
    sc.tl.leiden(adata, key_added="xtg_leiden", flavor="igraph", n_iterations=2, random_state=seed)
    sc.tl.umap(adata, random_state=seed)
    annotation = _transfer_labels(adata, seed=seed)

    metrics = {
        "n_cells": int(adata.n_obs),
        "model": model._model_summary_string,
        "epochs": epochs,
        "train_seconds": round(train_seconds, 1),
        "masked_mse_before": round(mse_before, 4),
        "masked_mse_after": round(mse_after, 4),
        "leiden_vs_bulk_labels_ari": round(
            float(adjusted_rand_score(adata.obs["bulk_labels"], adata.obs["xtg_leiden"])), 4
        ),
        "leiden_vs_bulk_labels_nmi": round(
            float(normalized_mutual_info_score(adata.obs["bulk_labels"], adata.obs["xtg_leiden"])),
            4,
        ),
        **annotation,
    }
    adata.write_h5ad(out / "pbmc_xtg.h5ad")
    model.save(out / "model", overwrite=True)
    fig = sc.pl.umap(adata, color=["bulk_labels", "xtg_leiden", "xtg_label"], show=False,
                     return_fig=True, wspace=0.45)  # fmt: skip
    fig.savefig(out / "umap.png", dpi=120, bbox_inches="tight")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _transfer_labels(adata: Any, *, seed: int) -> dict[str, Any]:
    """Transfer ``bulk_labels`` by kNN from a random half of the cells to the other half."""
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(seed)
    is_reference = rng.random(adata.n_obs) < 0.5
    x, labels = adata.obsm["X_xtg"], adata.obs["bulk_labels"].astype(str).to_numpy()
    knn = KNeighborsClassifier(n_neighbors=15, weights="distance")
    knn.fit(x[is_reference], labels[is_reference])
    predicted = labels.copy()
    predicted[~is_reference] = knn.predict(x[~is_reference])
    adata.obs["xtg_label"] = predicted
    adata.obs["xtg_label"] = adata.obs["xtg_label"].astype("category")
    adata.obs["xtg_reference"] = is_reference
    accuracy = float((predicted[~is_reference] == labels[~is_reference]).mean())
    return {"label_transfer_accuracy_on_held_out_half": round(accuracy, 4)}
