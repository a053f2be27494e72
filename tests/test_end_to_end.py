"""Train on the bundled real data, embed, cluster: the workflow a user runs first."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scanpy as sc
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

import xtrimogene_sc as xtg


@pytest.mark.slow
def test_pbmc_pretraining_lowers_masked_mse_and_recovers_cell_types(slow_full):
    torch.manual_seed(0)
    adata = xtg.datasets.pbmc68k_counts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(adata)
    model = xtg.XTrimoGene(adata, preset="tiny", decoder_mode="full" if slow_full else "masked")
    mse_start = model.get_reconstruction_error()
    model.train(
        max_epochs=10 if slow_full else 6, batch_size=32, lr=1e-3, enable_progress_bar=False
    )
    mse_end = model.get_reconstruction_error()
    # measured 2.84 -> 0.197 in 6 epochs; predicting each gene's mean scores 0.40
    assert mse_end < 0.25 * mse_start
    assert mse_end < 0.35

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.tl.embed(adata, model, progress=False)
    sc.pp.neighbors(adata, use_rep="X_xtg", random_state=0)
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, random_state=0)
    labels = adata.obs["bulk_labels"]
    ari = adjusted_rand_score(labels, adata.obs["leiden"])
    nmi = normalized_mutual_info_score(labels, adata.obs["leiden"])
    shuffled = np.random.default_rng(0).permutation(labels.to_numpy())
    nmi_chance = normalized_mutual_info_score(shuffled, adata.obs["leiden"])
    # Chance is ARI ~ 0 and the NMI of shuffled labels. Measured with 6 epochs: ARI 0.14,
    # NMI 0.31 (PCA on log-normalised counts: ARI 0.50, NMI 0.64 -- a tiny model trained on
    # 700 cells does not beat PCA). Demand a clear margin over chance.
    assert ari > 0.08
    assert nmi > nmi_chance + 0.15
