"""Cell-type annotation benchmark: xTrimoGene against standard baselines.

For every labelled data set (the bundled ``pbmc68k_counts()`` plus every ``*.h5ad`` under the
shared data directory that has a PROVENANCE file and a categorical label column) and every seed,
the cells are split 80/20 with a stratified shuffle split. Every method sees only the training
cells (labels and counts) before predicting the test cells:

* xTrimoGene is **pretrained on the training split only** (inductive; masked regression uses no
  labels), with the ``tiny`` preset and the masked decoder, then used three ways: frozen
  embedding + logistic probe, frozen embedding + kNN (both via ``xtg.tl.annotate``, calibrated),
  and the fine-tuned classifier (last encoder layer + MLP head).
* L1 logistic regression on log-normalised, scaled highly variable genes (HVGs from the training
  split; C chosen by 3-fold CV on the training split).
* PCA (fitted on the training split) + kNN.
* scVI latent + kNN, and scANVI's own predictions (scVI trained on the training split; test cells
  are mapped with the trained encoder).
* The majority class, as a floor.

Metrics: accuracy, macro-F1 and top-label expected calibration error (ECE, 15 bins) of the
predicted probabilities on the test cells; mean ± sd over seeds. Run ``--quick`` for a smoke test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import torch
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

import xtrimogene_sc as xtg
from xtrimogene_sc.tl import expected_calibration_error

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python benchmarks/<this script>.py`
    sys.path.insert(0, str(ROOT))
from benchmarks._results import record  # noqa: E402

LABEL_CANDIDATES = ("cell_type", "celltype", "cell_types", "labels", "label", "bulk_labels")


# ---------------------------------------------------------------------- data sets
def bundled() -> list[tuple[str, ad.AnnData, str]]:
    return [
        ("pbmc68k_reduced (700 cells, 10 labels)", xtg.datasets.pbmc68k_counts(), "bulk_labels")
    ]


def discover(data_dir: Path) -> list[tuple[str, ad.AnnData, str]]:
    """Labelled h5ad files with a PROVENANCE file beside them."""
    found = []
    for path in sorted(data_dir.rglob("*.h5ad")) if data_dir.exists() else []:
        if not list(path.parent.glob(f"{path.stem}*PROVENANCE*")):
            print(f"skip {path}: no PROVENANCE file beside it")
            continue
        adata = ad.read_h5ad(path)
        if "counts" in adata.layers:
            adata.X = adata.layers["counts"]
        key = next(
            (
                k
                for k in LABEL_CANDIDATES
                if k in adata.obs and 2 <= adata.obs[k].astype(str).nunique() <= 200
            ),
            None,
        )
        if key is None:
            print(f"skip {path}: no categorical label column among {LABEL_CANDIDATES}")
            continue
        found.append((f"{path.stem} ({adata.n_obs} cells)", adata, key))
    if not found:
        print(f"no labelled h5ad data sets with a PROVENANCE file under {data_dir}")
    return found


# ---------------------------------------------------------------------- methods
# Each method: (train AnnData, test AnnData, label key, settings) -> (classes, probabilities)
Method = Callable[[ad.AnnData, ad.AnnData, str, argparse.Namespace], tuple[np.ndarray, np.ndarray]]


_CACHE: dict[str, object] = {}  # models shared by the methods of one split; cleared per split
_SHARED_SECONDS: dict[str, float] = {}  # time of the shared training steps, reported apart


def _pretrained(train: ad.AnnData, args: argparse.Namespace) -> xtg.XTrimoGene:
    if "xtg" not in _CACHE and args.pretrained is not None:
        _CACHE["xtg"] = xtg.XTrimoGene.load(args.pretrained)
    if "xtg" not in _CACHE:
        data = train.copy()
        xtg.XTrimoGene.setup_anndata(data)
        start = time.perf_counter()
        model = xtg.XTrimoGene(data, preset=args.preset, decoder_mode="masked")
        model.train(max_epochs=args.pretrain_epochs, batch_size=32, enable_progress_bar=False)
        _SHARED_SECONDS["xTrimoGene pretraining (shared)"] = time.perf_counter() - start
        _CACHE["xtg"] = model
    return _CACHE["xtg"]


def _probe(method: str) -> Method:
    def run(train, test, key, args):
        model = _pretrained(train, args)
        for data in (train, test):
            if "X_xtg" not in data.obsm:
                xtg.tl.embed(data, model, progress=False)
        xtg.tl.annotate(
            test, reference=train, labels_key=key, use_rep="X_xtg", method=method,
            unknown_threshold=0.0, key_added="bench",
        )  # fmt: skip
        return np.array(test.uns["bench"]["params"]["classes"]), test.obsm["bench_probabilities"]

    return run


def xtg_finetuned(train, test, key, args):
    model = _pretrained(train, args)
    classifier = xtg.model.XTrimoGeneClassifier(model, n_trainable_layers=1)
    classifier.train(train, labels_key=key, max_epochs=args.finetune_epochs, seed=args.seed)
    return np.asarray(classifier.classes_), classifier.predict_proba(test)


def _lognorm_hvg(train: ad.AnnData, test: ad.AnnData) -> tuple[ad.AnnData, ad.AnnData]:
    train, test = train.copy(), test.copy()
    for data in (train, test):
        sc.pp.normalize_total(data, target_sum=1e4)
        sc.pp.log1p(data)
    if train.n_vars > 2000:
        sc.pp.highly_variable_genes(train, n_top_genes=2000)
        genes = train.var_names[train.var["highly_variable"]]
        train, test = train[:, genes].copy(), test[:, genes].copy()
    return train, test


def l1_logreg(train, test, key, args):
    train, test = _lognorm_hvg(train, test)
    scaler = StandardScaler(with_mean=False).fit(train.X)
    model = LogisticRegressionCV(
        Cs=[0.03, 0.1, 0.3, 1.0], l1_ratios=[1.0], solver="saga", cv=3, scoring="f1_macro",
        max_iter=300, tol=1e-3, random_state=args.seed, use_legacy_attributes=False,
    )  # fmt: skip
    model.fit(scaler.transform(train.X), train.obs[key].astype(str))
    return model.classes_, model.predict_proba(scaler.transform(test.X))


def pca_knn(train, test, key, args):
    train, test = _lognorm_hvg(train, test)
    n_comps = min(50, train.n_obs - 1, train.n_vars - 1)
    sc.pp.pca(train, n_comps=n_comps, random_state=args.seed)
    loadings = train.varm["PCs"]
    mean = np.asarray(train.X.mean(axis=0)).ravel()
    test_pcs = np.asarray(test.X @ loadings) - mean @ loadings
    return _knn(train.obsm["X_pca"], train.obs[key], test_pcs)


def _knn(train_rep, labels, test_rep):
    knn = KNeighborsClassifier(n_neighbors=15, weights="distance").fit(
        train_rep, labels.astype(str)
    )
    return knn.classes_, knn.predict_proba(test_rep)


def _scvi(train: ad.AnnData, test: ad.AnnData, key: str, args: argparse.Namespace):
    import scvi

    if "scvi" not in _CACHE:
        scvi.settings.seed = args.seed
        data = train.copy()
        data.obs["_label"] = data.obs[key].astype(str)
        scvi.model.SCVI.setup_anndata(data)
        start = time.perf_counter()
        model = scvi.model.SCVI(data)
        model.train(max_epochs=args.scvi_epochs, enable_progress_bar=False)
        _SHARED_SECONDS["scVI training (shared)"] = time.perf_counter() - start
        query = test.copy()
        query.obs["_label"] = "Unknown"
        _CACHE["scvi"] = (model, data, query)
    return _CACHE["scvi"]


def scvi_knn(train, test, key, args):
    model, data, query = _scvi(train, test, key, args)
    latent = model.get_latent_representation(data)
    return _knn(latent, data.obs[key], model.get_latent_representation(query))


def scanvi(train, test, key, args):
    import scvi

    model, data, query = _scvi(train, test, key, args)
    scanvi_model = scvi.model.SCANVI.from_scvi_model(
        model, unlabeled_category="Unknown", labels_key="_label", adata=data
    )
    scanvi_model.train(max_epochs=args.scanvi_epochs, enable_progress_bar=False)
    soft = scanvi_model.predict(query, soft=True)
    return np.asarray(soft.columns), soft.to_numpy()


def majority(train, test, key, args):
    counts = train.obs[key].astype(str).value_counts()
    proba = np.tile(counts.to_numpy() / counts.sum(), (test.n_obs, 1))
    return counts.index.to_numpy(), proba


METHODS: dict[str, Method] = {
    "xTrimoGene embedding + logistic probe": _probe("logreg"),
    "xTrimoGene embedding + kNN": _probe("knn"),
    "xTrimoGene fine-tuned (last layer + MLP)": xtg_finetuned,
    "L1 logistic regression (log-norm HVGs)": l1_logreg,
    "PCA + kNN": pca_knn,
    "scVI latent + kNN": scvi_knn,
    "scANVI": scanvi,
    "majority class": majority,
}


# ---------------------------------------------------------------------- evaluation
def score(classes, proba, truth) -> dict[str, float]:
    classes = np.asarray(classes).astype(str)
    predicted = classes[np.asarray(proba).argmax(axis=1)]
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(t, -1) for t in truth])
    return {
        "accuracy": accuracy_score(truth, predicted),
        "macro_f1": f1_score(truth, predicted, average="macro", zero_division=0),
        "ece": expected_calibration_error(proba, y),
    }


def run_dataset(name: str, adata: ad.AnnData, key: str, args: argparse.Namespace) -> pd.DataFrame:
    labels = adata.obs[key].astype(str)
    counts = labels.value_counts()
    adata = adata[labels.isin(counts.index[counts >= 2]).to_numpy()].copy()
    rows = []
    for seed in args.seeds:
        args.seed = seed
        torch.manual_seed(seed)
        split = StratifiedShuffleSplit(n_splits=1, test_size=0.2, random_state=seed)
        train_idx, test_idx = next(split.split(np.zeros(adata.n_obs), adata.obs[key].astype(str)))
        train, test = adata[train_idx].copy(), adata[test_idx].copy()
        truth = test.obs[key].astype(str).to_numpy()
        for method, fn in METHODS.items():
            if method not in args.methods:
                continue
            start, shared_before = time.perf_counter(), sum(_SHARED_SECONDS.values())
            classes, proba = fn(train, test, key, args)
            seconds = time.perf_counter() - start - (sum(_SHARED_SECONDS.values()) - shared_before)
            rows.append({"dataset": name, "seed": seed, "method": method,
                         **score(classes, proba, truth), "seconds": seconds})  # fmt: skip
            print(f"  seed {seed} {method:42s} acc {rows[-1]['accuracy']:.3f} "
                  f"F1 {rows[-1]['macro_f1']:.3f} ECE {rows[-1]['ece']:.3f} "
                  f"({seconds:.0f}s)", flush=True)  # fmt: skip
        for step, seconds in _SHARED_SECONDS.items():
            rows.append({"dataset": name, "seed": seed, "method": step, "seconds": seconds})
        _SHARED_SECONDS.clear()
        _CACHE.clear()
    return pd.DataFrame(rows)


def table(results: pd.DataFrame) -> str:
    lines = []
    for name, group in results.groupby("dataset", sort=False):
        n_seeds = group["seed"].nunique()
        lines += [f"**{name}**, {n_seeds} seeds, stratified 80/20 splits (mean ± sd)", ""]
        lines += [
            "| method | accuracy | macro-F1 | ECE | seconds / seed |",
            "|---|---|---|---|---|",
        ]
        for method, rows in group.groupby("method", sort=False):
            cells = [
                f"{rows[m].mean():.3f} ± {rows[m].std(ddof=1) if len(rows) > 1 else 0:.3f}"
                if rows[m].notna().any()
                else "–"
                for m in ("accuracy", "macro_f1", "ece")
            ]
            lines.append(f"| {method} | {' | '.join(cells)} | {rows['seconds'].mean():.0f} |")
        lines.append("")
    return "\n".join(lines)


def settings_text(args: argparse.Namespace, total_seconds: float) -> str:
    return (
        f"Run {dt.date.today().isoformat()} with `python benchmarks/bench_annotation.py"
        f"{' --quick' if args.quick else ''}` on {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, CPU only; total {total_seconds / 60:.1f} min. "
        + (
            f"xTrimoGene: weights from `{args.pretrained}` (not pretrained per split); "
            if args.pretrained is not None
            else f"xTrimoGene: preset `{args.preset}`, masked decoder, pretrained "
            f"{args.pretrain_epochs} epochs per seed on the training split only; "
        )
        + f"fine-tuning at most {args.finetune_epochs} "
        f"epochs (early stopping on a validation tenth of the training split). scVI "
        f"{args.scvi_epochs} epochs, scANVI {args.scanvi_epochs} more; xtrimogene_sc "
        f"{xtg.__version__}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1-2 epochs: smoke test")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(__file__).parents[2] / "shared" / "data"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--pretrained", type=Path, default=None,
                        help="a saved XTrimoGene directory used for every split instead of "
                        "pretraining on the training split")  # fmt: skip
    parser.add_argument("--pretrain-epochs", type=int, default=10)
    parser.add_argument("--finetune-epochs", type=int, default=20)
    parser.add_argument("--scvi-epochs", type=int, default=200)
    parser.add_argument("--scanvi-epochs", type=int, default=20)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--write", nargs="*", type=Path, default=None,
                        help="markdown files whose result block to replace")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.pretrain_epochs, args.finetune_epochs = args.seeds[:1], 1, 2
        args.scvi_epochs, args.scanvi_epochs = 5, 2
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    results = []
    for name, adata, key in bundled() + discover(args.data_dir):
        print(f"{name}: labels obs[{key!r}]", flush=True)
        results.append(run_dataset(name, adata, key, args))
    text = table(pd.concat(results)) + "\n" + settings_text(args, time.perf_counter() - start)
    record(text, args.write, "annotation")


if __name__ == "__main__":
    main()
