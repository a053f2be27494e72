"""UMAPs of several embeddings of the same cells, coloured by batch and by cell type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def umap_grid(adata: Any, reps: dict[str, np.ndarray], path: Path, *, title: str) -> None:
    """One row per embedding: its UMAP coloured by ``obs["batch"]``, then by ``coarse_type``."""
    import anndata as ad
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc

    from xtrimogene_sc._threads import torch_threads_kept

    columns = ("batch", "coarse_type")
    fig, axes = plt.subplots(len(reps), 2, figsize=(8.5, 3.6 * len(reps)), squeeze=False)
    for row, (method, values) in enumerate(reps.items()):
        graph = ad.AnnData(np.zeros((adata.n_obs, 1), dtype=np.float32), obs=adata.obs.copy())
        graph.obsm["X_rep"] = np.asarray(values, dtype=np.float32)
        with torch_threads_kept():
            sc.pp.neighbors(graph, use_rep="X_rep", n_neighbors=15, random_state=0)
            sc.tl.umap(graph, random_state=0)
        for col, key in enumerate(columns):
            ax = axes[row, col]
            sc.pl.umap(graph, color=key, ax=ax, show=False, frameon=False, size=8,
                       legend_fontsize=7, title=f"{method}: {key.replace('_', ' ')}")  # fmt: skip
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
