# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Predicting perturbation responses with xTrimoGene
#
# `xtg.XTrimoGenePerturbation` predicts the expression of control cells under a condition:
#
# * **genetic** conditions are gene symbols joined by `+` (`"KLF1"`, `"KLF1+MAP2K6"`); a gene
#   never perturbed in training is predicted through the backbone's gene embeddings;
# * **treatments** (`"stimulated"`) get a learned embedding, and with cell types the response
#   of a type that was never treated is predicted from its own control cells (scGen protocol).
#
# Every prediction is compared with the simple baselines of `xtg.model.PerturbationBaseline`
# (`no_change`, `mean_shift`, `additive`, `linear`), which recent benchmarks found to match or
# beat deep models (Ahlmann-Eltze et al. 2025). **Expect them to win here**: the backbone is a
# `tiny` model pretrained for minutes on a few thousand cells, not a foundation model. With
# pretrained weights, pass `backbone="path/to/model"` (a saved model or the released
# scFoundation checkpoint) instead of pretraining here.
#
# Set `XTG_TUTORIAL_BOUNDED=1` to run a shortened version (CI does).

# %%
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import anndata as ad
import matplotlib as mpl

if "ipykernel" not in __import__("sys").modules:
    mpl.use("Agg")  # running as a script: draw into files, not windows
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import xtrimogene_sc as xtg
from xtrimogene_sc.model import SMALL_DATA_RECIPE, PerturbationBaseline, XTrimoGenePerturbation

BOUNDED = os.environ.get("XTG_TUTORIAL_BOUNDED") == "1"
RECIPE = SMALL_DATA_RECIPE  # the package's recipe for pretraining from scratch on small data
PRETRAIN = {"enable_progress_bar": False}  # max_epochs from the recipe, per data set
if BOUNDED:
    PRETRAIN["max_epochs"] = 1
HEAD_STEPS = 100 if BOUNDED else 1500
FIGURES = Path(os.environ.get("XTG_TUTORIAL_FIGDIR", tempfile.mkdtemp(prefix="xtg_figures_")))
FIGURES.mkdir(parents=True, exist_ok=True)
ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd().parent
KANG = ROOT.parent / "shared" / "data" / "perturbation" / "kang2018_pbmc_ifnb_scgen_valid.h5ad"
warnings.filterwarnings("ignore", category=UserWarning)  # coverage notes on small gene panels
torch.manual_seed(0)
torch.set_num_threads(1)  # the head's tensors are small; more threads only synchronise
pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 10)

# %% [markdown]
# ## Genetic perturbations: a simulated Perturb-seq screen
#
# No genetic Perturb-seq data set is available offline, so we simulate one with known ground
# truth: genes belong to co-expression programs, knocking a gene down shifts its program and the
# programs it regulates, and half of the pairs interact (synergy, buffering, epistasis).
# We hold out a quarter of the single-gene perturbations, every pair containing one of those
# genes, and a few pairs of trained genes.

# %%
size = {"n_single": 24, "n_combos": 20, "n_control": 300, "cells_per_condition": 15}
adata = xtg.datasets.synthetic_perturbseq(**(size if BOUNDED else {}), seed=0)
XTrimoGenePerturbation.setup_anndata(adata, condition_key="condition", control="ctrl")
conditions = sorted(set(adata.obs["condition"].astype(str)) - {"ctrl"})
singles = [c for c in conditions if "+" not in c]
rng = np.random.default_rng(0)
unseen_genes = sorted(rng.choice(singles, size=len(singles) // 4, replace=False))
combos = [c for c in conditions if "+" in c]
seen_combos = [c for c in combos if not set(c.split("+")) & set(unseen_genes)]
test_conditions = unseen_genes + [c for c in combos if c not in seen_combos] + seen_combos[:4]
held_out = adata.obs["condition"].isin(test_conditions).to_numpy()
train = adata[~held_out].copy()
control = adata[(adata.obs["condition"] == "ctrl").to_numpy()].copy()
print(f"{len(unseen_genes)} unseen genes, {len(test_conditions)} test conditions")

# %% [markdown]
# ## A backbone pretrained on the training cells only
#
# Masked-value regression needs no labels; the held-out perturbed cells are never seen.

# %%
xtg.XTrimoGene.setup_anndata(train)
backbone = xtg.XTrimoGene(train, preset=RECIPE.preset, **RECIPE.config_overrides())
backbone.train(**{**RECIPE.train_kwargs(train.n_obs), **PRETRAIN})

# %% [markdown]
# ## The perturbation model
#
# The backbone stays frozen (`n_trainable_layers=0`): every control cell is embedded once, and a
# small head learns the shift of a cell's log-normalised profile under each training condition.
# `predict` returns an AnnData on the model's scale, `ln(1 + 1e4 * count / total)`, one row per
# control cell and condition (or per condition with `aggregate="mean"`).

# %%
model = XTrimoGenePerturbation(train, backbone=backbone)
model.train(max_steps=HEAD_STEPS)
predictions = {"xTrimoGene": model.predict(control, test_conditions, aggregate="mean")}
for method in ("no_change", "mean_shift", "linear"):
    baseline = PerturbationBaseline(train, method=method)
    baseline.train()
    predictions[method] = baseline.predict(control, test_conditions, aggregate="mean")
print(predictions["xTrimoGene"])

# %% [markdown]
# The additive baseline needs every gene measured alone, so it only applies to the held-out
# pairs of trained genes.

# %%
additive = PerturbationBaseline(train, method="additive")
additive.train()
predictions["additive"] = additive.predict(control, seen_combos[:4], aggregate="mean")

# %% [markdown]
# ## Scores
#
# `tl.perturbation_metrics` compares predicted and observed changes from control per
# condition: Pearson correlation over all genes and over the 20 genes that change most (DE),
# the MSE on those genes and the share of them whose direction is right.

# %%
observed = adata[held_out | (adata.obs["condition"] == "ctrl").to_numpy()].copy()


def category(condition: str) -> str:
    genes = condition.split("+")
    if len(genes) == 1:
        return "unseen single"
    return f"pair, {sum(g not in unseen_genes for g in genes)}/2 genes seen"


tables = []
for method, pred in predictions.items():
    table = xtg.tl.perturbation_metrics(pred, observed=observed)
    table["method"], table["test set"] = method, table["condition"].map(category)
    tables.append(table)
scores = pd.concat(tables).groupby(["test set", "method"], sort=False)
print(scores[["pearson_delta", "pearson_delta_de", "mse_de", "direction_de"]].mean().round(3))

# %% [markdown]
# One unseen gene, predicted against observed change per gene: the model on the left, the
# linear baseline on the right.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), layout="constrained")
for ax, method in zip(axes, ("xTrimoGene", "linear"), strict=True):
    xtg.pl.perturbation_response(
        predictions[method], observed=observed, condition=unseen_genes[0], ax=ax, show=False
    )
    ax.set_title(f"{method}: {ax.get_title()}", fontsize=9)
fig.savefig(FIGURES / "perturbation_unseen_gene.png")

# %% [markdown]
# ## Treatments: interferon-beta on PBMCs, one cell type held out
#
# Kang et al. (2018) stimulated PBMCs with interferon-beta. Following scGen, we remove the
# stimulated cells of one cell type from training and predict them from that type's control
# cells. The data ship with the project's shared data, not with the package.

# %%
if KANG.exists():
    kang = ad.read_h5ad(KANG)
    if BOUNDED:
        kang = kang[np.random.default_rng(0).permutation(kang.n_obs)[:600]].copy()
    XTrimoGenePerturbation.setup_anndata(
        kang, condition_key="condition", control="control", cell_type_key="cell_type"
    )
    is_cd4 = (kang.obs["cell_type"] == "CD4T").to_numpy()
    stimulated = (kang.obs["condition"] == "stimulated").to_numpy()
    kang_train = kang[~(is_cd4 & stimulated)].copy()
    xtg.XTrimoGene.setup_anndata(kang_train)
    kang_backbone = xtg.XTrimoGene(kang_train, preset=RECIPE.preset, **RECIPE.config_overrides())
    kang_backbone.train(**{**RECIPE.train_kwargs(kang_train.n_obs), **PRETRAIN})
    kang_model = XTrimoGenePerturbation(kang_train, backbone=kang_backbone)
    kang_model.train(max_steps=HEAD_STEPS)
    kang_observed = kang[is_cd4].copy()
    rows, kang_predictions = [], {}
    for name, predictor in [
        ("xTrimoGene", kang_model),
        *[(m, PerturbationBaseline(kang_train, method=m)) for m in ("mean_shift", "linear")],
    ]:
        if name != "xTrimoGene":
            predictor.train()
        pred = predictor.predict(kang_observed, ["stimulated"], aggregate="mean")
        kang_predictions[name] = pred
        table = xtg.tl.perturbation_metrics(pred, observed=kang_observed)
        rows.append({"method": name, **table.iloc[0][["pearson_delta_de", "mse_de"]].to_dict()})
    print(pd.DataFrame(rows).round(3))
    ax = xtg.pl.perturbation_response(
        kang_predictions["xTrimoGene"], observed=kang_observed, condition="stimulated", show=False
    )
    ax.figure.savefig(FIGURES / "perturbation_kang_cd4t.png")
else:
    print(f"{KANG} not found: the Kang section is skipped")

# %% [markdown]
# ## Saving
#
# `save` writes safetensors weights and a json configuration atomically; `load` reads no
# pickle. A loaded model predicts, including genes it never saw perturbed.

# %%
with tempfile.TemporaryDirectory() as tmp:
    model.save(Path(tmp) / "perturbation_model")
    reloaded = XTrimoGenePerturbation.load(Path(tmp) / "perturbation_model")
    again = reloaded.predict(control, test_conditions, aggregate="mean")
    np.testing.assert_allclose(again.X, predictions["xTrimoGene"].X, atol=1e-5)
plt.close("all")
print("figures written to", FIGURES)
