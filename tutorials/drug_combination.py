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
# # Drug-combination synergy with cell-line embeddings
#
# Which pairs of cancer drugs work better together than alone, and in which cell lines? This
# tutorial predicts the synergy of drug pairs on the O'Neil 2016 screen (38 drugs, 39 cell lines,
# Loewe synergy scores), the third downstream task of xTrimoGene/scFoundation: a DeepDDS-style
# model whose cell-line features come from the foundation model's embedding of bulk expression.
#
# We will
#
# 1. load the screen and turn the cell lines into an AnnData,
# 2. embed the cell lines with xTrimoGene in **bulk mode** (`input_type="bulk"`),
# 3. train `xtg.DrugCombinationModel` (order-invariant in the two drugs) on a
#    **leave-cell-line-out** split, beside gradient boosting and a model without cell features,
# 4. see the leakage check refuse a split that would not test what it claims,
# 5. regress the Loewe score and save the model.
#
# **No pretrained weights ship with the package.** The embedding below comes from a `tiny` model
# pretrained here in seconds on sorted PBMCs: that is not a foundation model's embedding, and the
# benchmark in the docs shows plain expression and even no cell features doing at least as well.
# With released weights, replace the pretraining cell by `model = xtg.XTrimoGene.load(path)`.
#
# The data are the staged O'Neil tables (`drug_combination/` beside the repository, see its
# PROVENANCE); set `XTG_DRUGCOMB_DATA` to point elsewhere. `XTG_TUTORIAL_BOUNDED=1` runs a
# shortened version (CI does). Drug fingerprints need RDKit: `pip install 'xtrimogene-sc[drug]'`.

# %%
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import matplotlib as mpl

if "ipykernel" not in __import__("sys").modules:
    mpl.use("Agg")  # running as a script: draw into files, not windows
import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.metrics import roc_curve

import xtrimogene_sc as xtg
from xtrimogene_sc import drugcomb

BOUNDED = os.environ.get("XTG_TUTORIAL_BOUNDED") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()  # tutorials/
SHARED = HERE.parents[1] / "shared" / "data"  # beside the repository
DATA = Path(os.environ.get("XTG_DRUGCOMB_DATA", SHARED / "drug_combination"))
PBMC = DATA.parent / "annotation" / "zheng2017_sorted_pbmc.h5ad"
EPOCHS = 5 if BOUNDED else 200
FIGURES = Path(os.environ.get("XTG_TUTORIAL_FIGDIR", tempfile.mkdtemp(prefix="xtg_figures_")))
FIGURES.mkdir(parents=True, exist_ok=True)
warnings.filterwarnings("ignore", category=UserWarning)  # coverage notes on a 954-gene panel
torch.manual_seed(0)
torch.set_num_threads(1)

# %% [markdown]
# ## The screen
#
# `load_oneil` returns one row per (drug A, drug B, cell line). The screen measured 315 of these
# triplets twice; their scores are averaged before labelling. Labels follow DeepDDS: Loewe score
# above 10 is synergistic (1), below 0 is not (0), and the ambiguous 0..10 band gets NaN, so
# classification leaves it out while regression uses every row.
#
# `scope="deepdds"` keeps the 36 drugs and 31 cell lines that DeepDDS used: only these 31 lines
# have the CCLE TPM profiles the embedding needs. The loader logs what it drops (8 cell lines
# and the two platinum salts) rather than doing it silently.

# %%
data = drugcomb.load_oneil(DATA, scope="deepdds")
rows = data.combinations
if BOUNDED:  # the first 14 drugs: a quarter of the rows
    drugs = list(data.smiles.index[:14])
    rows = rows[rows["drug_a"].isin(drugs) & rows["drug_b"].isin(drugs)].reset_index(drop=True)
print(rows.head())
print(f"{len(rows):,} triplets, {int(rows['label'].notna().sum()):,} labelled")

# %% [markdown]
# ## Cell lines as an AnnData, embedded in bulk mode
#
# `data.expression` is an AnnData of the 31 cell lines x 954 genes holding TPM (linear scale).
# Bulk profiles are not counts: `input_type="bulk"` accepts any non-negative values and applies
# the scFoundation bulk recipe, `ln(1 + 1e4 x / N)` per gene and T = S = log10 N, with N the total
# over vocabulary genes. Too few vocabulary genes, or negative values such as z-scores, are
# refused with a message.

# %%
cells = data.expression.copy()
pbmc = ad.read_h5ad(PBMC)
pbmc = pbmc[:, pbmc.var_names.isin(cells.var_names)]
pbmc = pbmc[np.asarray(pbmc.X.sum(axis=1)).ravel() > 0].copy()
if BOUNDED:
    pbmc = pbmc[:300].copy()
xtg.XTrimoGene.setup_anndata(pbmc)
model = xtg.XTrimoGene(pbmc, preset="tiny", decoder_mode="masked")
model.train(max_epochs=1 if BOUNDED else 20, batch_size=32, enable_progress_bar=False)

xtg.tl.embed(cells, model, input_type="bulk", progress=False)  # -> cells.obsm["X_xtg"]
cells.obsm["X_log_tpm"] = np.log1p(cells.X)
print(cells)

# %% [markdown]
# ## Drugs from SMILES
#
# Drugs are featurised with Morgan fingerprints (radius 2, 1,024 bits) through RDKit. A SMILES
# that RDKit cannot read stops the model with the drug's name and the SMILES in the message.

# %%
fingerprints = drugcomb.morgan_fingerprints(data.smiles)
print(fingerprints.shape, "bits set per drug:", fingerprints.sum(axis=1).median())

# %% [markdown]
# ## Train on some cell lines, test on others
#
# A random split over rows tests memory: every pair has been seen in other cell lines. Holding
# out whole cell lines asks what a user asks of a new cell line. `make_folds` builds the folds;
# `check_split` (also run inside `cross_validate`) refuses a split that breaks its promise.
# Early stopping uses held-out cell lines of the training fold too.

# %%
train_idx, test_idx = drugcomb.make_folds(rows, "cell_line", n_folds=5, seed=0)[0]
train, test = rows.iloc[train_idx], rows.iloc[test_idx]
fit_idx, val_idx = drugcomb.make_folds(train, "cell_line", n_folds=8, seed=0)[0]
print("test cell lines:", sorted(test["cell_line"].unique()))


def fit_and_score(model, task="classification"):
    kwargs = {} if isinstance(model, drugcomb.GradientBoostingSynergy) else {"max_epochs": EPOCHS}
    model.train(train.iloc[fit_idx], validation=train.iloc[val_idx], **kwargs)
    predicted = model.predict(test)
    return predicted, drugcomb.synergy_metrics(test, predicted, task=task)


candidates = {
    "X_xtg (tiny model)": drugcomb.DrugCombinationModel(data.smiles, cells, cell_key="X_xtg"),
    "log TPM": drugcomb.DrugCombinationModel(data.smiles, cells, cell_key="X_log_tpm"),
    "drugs only": drugcomb.DrugCombinationModel(data.smiles, cell_key=None),
    "boosting + log TPM": drugcomb.GradientBoostingSynergy(
        data.smiles, cells, cell_key="X_log_tpm", max_iter=50 if BOUNDED else 500
    ),
}
predictions = {}
for name, candidate in candidates.items():
    predictions[name], metrics = fit_and_score(candidate)
    print(f"{name:22s} AUROC {metrics['auroc']:.3f}  AUPRC {metrics['auprc']:.3f}  "
          f"balanced accuracy {metrics['balanced_accuracy']:.3f}")  # fmt: skip

# %% [markdown]
# The ROC curves on the held-out cell lines:

# %%
labelled = test["label"].notna().to_numpy()
fig, ax = plt.subplots(figsize=(4.5, 4.5))
for name, predicted in predictions.items():
    fpr, tpr, _ = roc_curve(test["label"][labelled], predicted[labelled])
    ax.plot(fpr, tpr, label=name)
ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
ax.set(xlabel="false positive rate", ylabel="true positive rate", title="unseen cell lines")
ax.legend(fontsize=8)
fig.savefig(FIGURES / "roc_leave_cell_line_out.png", bbox_inches="tight")

# %% [markdown]
# ## A + B is B + A
#
# The model encodes both drugs with one network and combines them as `[h_a + h_b, h_a * h_b]`,
# so swapping the columns gives bit-identical predictions: no augmentation needed.

# %%
ours = candidates["log TPM"]
swapped = test.rename(columns={"drug_a": "drug_b", "drug_b": "drug_a"})
assert np.array_equal(ours.predict(test), ours.predict(swapped))

# %% [markdown]
# ## The leakage check
#
# Splitting rows at random and calling it leave-cell-line-out is a mistake that inflates
# results. `check_split` names what leaks:

# %%
order = np.random.default_rng(0).permutation(len(rows))
try:
    drugcomb.check_split(rows, order[:1000], order[1000:], kind="cell_line")
except drugcomb.LeakageError as err:
    print("refused:", err)

# %% [markdown]
# ## Regression of the Loewe score
#
# `task="regression"` predicts the score itself, trained on every row (the 0..10 band included).

# %%
regressor = drugcomb.DrugCombinationModel(
    data.smiles, cells, cell_key="X_log_tpm", task="regression"
)
scores, metrics = fit_and_score(regressor, task="regression")
print(f"Pearson r on unseen cell lines: {metrics['pearson_r']:.3f}")
fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.scatter(test["synergy_loewe"], scores, s=3, alpha=0.4)
ax.set(xlabel="measured Loewe score", ylabel="predicted", title="unseen cell lines")
fig.savefig(FIGURES / "loewe_scatter.png", bbox_inches="tight")

# %% [markdown]
# ## Cross-validation and saving
#
# `cross_validate` runs every fold of a split with its leakage check and inner early-stopping
# split; the benchmark script (`benchmarks/bench_drug_combination.py`) runs it for four splits
# and every feature set. Models save to a directory of safetensors weights and a JSON config.

# %%
table = drugcomb.cross_validate(
    lambda: drugcomb.DrugCombinationModel(data.smiles, cell_key=None),
    rows, split="drug", n_folds=3 if BOUNDED else 5, train_kwargs={"max_epochs": EPOCHS},
)  # fmt: skip
print(table[["fold", "n_train", "n_test", "auroc", "auprc", "balanced_accuracy"]])

with tempfile.TemporaryDirectory() as tmp:
    ours.save(Path(tmp) / "synergy")
    reloaded = drugcomb.DrugCombinationModel.load(Path(tmp) / "synergy")
    assert np.array_equal(reloaded.predict(test), ours.predict(test))
plt.close("all")
print("figures written to", FIGURES)
