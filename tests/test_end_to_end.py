"""Train on the bundled real data, embed, cluster: the workflow a user runs first."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scanpy as sc
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

import xtrimogene_sc as xtg
from xtrimogene_sc.data._iterate import iter_batches
from xtrimogene_sc.data._loading import observed_genes
from xtrimogene_sc.model import SMALL_DATA_RECIPE


def masked_predictions(model: xtg.XTrimoGene, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Prediction, target and gene position of every entry masked as in
    ``get_reconstruction_error`` (same batches, same generators)."""
    X, var_to_position = model._resolve(None, None, None)
    observed = observed_genes(var_to_position)
    model.module.eval()
    parts = []
    with torch.no_grad():
        for i, (_, cells) in enumerate(
            iter_batches(X, var_to_position, batch_size=32, progress=False)
        ):
            generator = torch.Generator().manual_seed(seed * 100_003 + i)
            out = model.module(cells.with_observed(observed), generator=generator)
            parts.append((out.prediction, out.target, out.positions))
    return tuple(torch.cat(p).float().numpy() for p in zip(*parts, strict=True))


def per_gene_mean_mse(target: np.ndarray, positions: np.ndarray) -> float:
    """MSE of predicting each masked entry by the mean masked value of its gene (in-sample)."""
    genes, index = np.unique(positions, return_inverse=True)
    means = np.bincount(index, weights=target) / np.bincount(index)
    return float(np.mean((target - means[index]) ** 2))


@pytest.mark.slow
def test_pbmc_pretraining_lowers_masked_mse_and_recovers_cell_types(slow_full):
    torch.manual_seed(0)
    adata = xtg.datasets.pbmc68k_counts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(adata)
    recipe = SMALL_DATA_RECIPE
    model = xtg.XTrimoGene(adata, preset=recipe.preset, **recipe.config_overrides())
    mse_start = model.get_reconstruction_error()
    train_kwargs = recipe.train_kwargs(adata.n_obs)
    if not slow_full:
        train_kwargs["max_epochs"] = 6  # CI: a bounded run (the recipe trains for ~60)
    model.train(**train_kwargs, enable_progress_bar=False)
    mse_end = model.get_reconstruction_error()
    prediction, target, positions = masked_predictions(model)
    assert np.isclose(np.mean((prediction - target) ** 2), mse_end, rtol=1e-4)
    baseline = per_gene_mean_mse(target, positions)
    # measured (6 epochs): 1.92 -> 1.03 (19.9 -> 1.10 without the recipe's whole-profile
    # read-out, whose extra layers shift the random initialisation), against ~1.1 for each gene's
    # mean masked value (an in-sample mean: a strict baseline). Six epochs only just beat it; the
    # recipe trains ~10x more.
    assert mse_end < 0.7 * mse_start
    assert mse_end < baseline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.tl.embed(adata, model, pooling=recipe.pooling, progress=False)
    sc.pp.neighbors(adata, use_rep="X_xtg", random_state=0)
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, random_state=0)
    labels = adata.obs["bulk_labels"]
    ari = adjusted_rand_score(labels, adata.obs["leiden"])
    nmi = normalized_mutual_info_score(labels, adata.obs["leiden"])
    shuffled = np.random.default_rng(0).permutation(labels.to_numpy())
    nmi_chance = normalized_mutual_info_score(shuffled, adata.obs["leiden"])
    # Chance is ARI ~ 0 and the NMI of shuffled labels (0.03). Measured with 6 epochs: ARI 0.37,
    # NMI 0.52 (PCA on log-normalised counts: ARI 0.50, NMI 0.64). Demand a clear margin.
    assert ari > 0.2
    assert nmi > nmi_chance + 0.3
