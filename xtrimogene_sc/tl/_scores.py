"""How well an embedding separates known labels: kNN accuracy and Leiden ARI, method-agnostic."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from xtrimogene_sc._threads import torch_threads_kept

if TYPE_CHECKING:
    from anndata import AnnData

RESOLUTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0)


def score_embedding(
    adata: AnnData,
    *,
    use_rep: str,
    labels_key: str,
    n_neighbors: int = 15,
    n_folds: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Score an embedding against labels with two metrics that treat every method alike.

    Parameters
    ----------
    adata
        Cells with the embedding in ``obsm[use_rep]`` and labels in ``obs[labels_key]``.
    use_rep
        ``obsm`` key of the embedding (e.g. ``"X_xtg"`` or ``"X_pca"``).
    labels_key
        ``obs`` column of the known labels (cell types).
    n_neighbors
        Neighbours of the kNN classifier and of the clustering graph.
    n_folds
        Folds of the stratified cross-validation.
    seed
        Seed of the folds and of Leiden.

    Returns
    -------
    ``knn_accuracy``
        Mean accuracy of a ``n_neighbors``-nearest-neighbour classifier over stratified folds.
    ``leiden_ari``
        Adjusted Rand index of Leiden clusters against the labels, at the resolution (from a
        fixed grid) whose number of clusters is closest to the number of labels, so that no
        method is favoured by one resolution.
    ``n_clusters``
        The number of Leiden clusters at that resolution.
    """
    embedding = np.asarray(adata.obsm[use_rep])
    labels = adata.obs[labels_key].astype(str).to_numpy()
    ari, n_clusters = leiden_ari(embedding, labels, n_neighbors=n_neighbors, seed=seed)
    return {
        "knn_accuracy": knn_accuracy(embedding, labels, n_neighbors=n_neighbors,
                                     n_folds=n_folds, seed=seed),
        "leiden_ari": ari,
        "n_clusters": float(n_clusters),
    }  # fmt: skip


def knn_accuracy(
    embedding: np.ndarray, labels: np.ndarray, *, n_neighbors: int, n_folds: int, seed: int
) -> float:
    """Stratified ``n_folds``-fold accuracy of a nearest-neighbour classifier."""
    import warnings

    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # rare labels with fewer cells than folds are still scored
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        scores = cross_val_score(KNeighborsClassifier(n_neighbors), embedding, labels, cv=folds)
    return float(scores.mean())


def depth_r2(
    embedding: np.ndarray, depth: np.ndarray, *, n_folds: int = 5, seed: int = 0
) -> float:
    """How much read depth an embedding carries: cross-validated R^2 of ``log10`` total counts.

    A ridge regression (standardised inputs, penalty chosen inside each fold) predicts the depth
    from the embedding; 0 means no depth beyond its mean, 1 all of it.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    target = np.log10(np.asarray(depth, dtype=np.float64))
    folds = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 11)))
    predicted = cross_val_predict(ridge, embedding, target, cv=folds)
    return float(1.0 - np.sum((target - predicted) ** 2) / np.sum((target - target.mean()) ** 2))


@torch_threads_kept()
def leiden_ari(
    embedding: np.ndarray, labels: np.ndarray, *, n_neighbors: int, seed: int
) -> tuple[float, int]:
    """ARI and cluster count of Leiden at the grid resolution nearest the number of labels."""
    import anndata as ad
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score

    graph = ad.AnnData(np.zeros((len(labels), 1), dtype=np.float32))
    graph.obsm["X"] = embedding
    sc.pp.neighbors(graph, use_rep="X", n_neighbors=n_neighbors, random_state=seed)
    n_labels = len(np.unique(labels))
    best: tuple[int, float, int] | None = None
    for resolution in RESOLUTIONS:
        sc.tl.leiden(graph, resolution=resolution, flavor="igraph", n_iterations=2,
                     random_state=seed)  # fmt: skip
        clusters = graph.obs["leiden"].to_numpy()
        n_clusters = len(np.unique(clusters))
        gap = abs(n_clusters - n_labels)
        if best is None or gap < best[0]:
            best = (gap, float(adjusted_rand_score(labels, clusters)), n_clusters)
    return best[1], best[2]


@torch_threads_kept()
def pca_reference(adata: AnnData, *, n_comps: int = 50, seed: int = 0) -> np.ndarray:
    """Scanpy's standard PCA of raw counts, the baseline every embedding is scored beside.

    Normalise to 10,000 counts a cell, ``log1p``, keep 2,000 highly variable genes when there
    are more, scale each gene (clipped at 10) and take ``n_comps`` components.
    """
    import scanpy as sc

    data = adata.copy()
    sc.pp.normalize_total(data, target_sum=1e4)
    sc.pp.log1p(data)
    if data.n_vars > 2000:
        sc.pp.highly_variable_genes(data, n_top_genes=2000, subset=True)
    with warnings.catch_warnings():  # centring makes the (at most 2,000-gene) matrix dense, as
        # in scanpy's own tutorials: the baseline is that recipe, not a step of this package
        warnings.filterwarnings("ignore", "zero-centering a sparse", UserWarning)
        sc.pp.scale(data, max_value=10)
    sc.pp.pca(data, n_comps=min(n_comps, min(data.shape) - 1), random_state=seed)
    return data.obsm["X_pca"]
