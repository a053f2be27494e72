"""From-scratch embeddings on small labelled data: the demo recipe against PCA and scVI.

For each data set (the bundled ``pbmc68k`` and the FACS-sorted ``zheng`` PBMCs under
``../shared/data/annotation``) and each seed, every method embeds all cells without labels and is
scored on the same cells with the same two metrics:

* **kNN accuracy**: 15-nearest-neighbour classifier, stratified 5-fold cross-validation;
* **Leiden ARI**: Leiden on the 15-neighbour graph of the embedding, at the resolution (from a
  fixed grid) whose cluster count is closest to the number of labels, so no method is favoured
  by one resolution;
* **depth R²**: how much of the read depth (log10 total counts) a cross-validated ridge
  regression recovers from the embedding. Depth differs between cell types, so even PCA of
  normalised counts carries some; an embedding far above PCA carries depth beyond identity.

Methods: ``pca`` (scanpy: normalise to 1e4, log1p, 2,000 HVGs where there are more genes, scale,
50 components), ``scvi`` (10 latent dimensions, scvi-tools' default epochs) and xTrimoGene trained
from scratch with a recipe (:data:`xtrimogene_sc.model.SMALL_DATA_RECIPE` by default, the one
``xtrimogene-sc demo`` uses). ``--sweep`` trains the variants of :data:`SWEEP` instead and scores
every pooling of each, to choose that recipe.

The recipe reads the 2,000 most variable genes where a data set has more (Zheng: 8,862 genes;
pbmc68k has 765, so it reads them all) and trains at least 60 passes over the cells.

    python benchmarks/bench_small_data.py --datasets pbmc68k,zheng --seeds 0,1,2
    python benchmarks/bench_small_data.py --datasets zheng --seeds 0,1,2 --methods pca
    python benchmarks/bench_small_data.py --datasets pbmc68k --seeds 0,1 --sweep \
        --variants "default,all genes"
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "annotation" / "zheng2017_sorted_pbmc.h5ad"
POOLINGS = ("concat", "mean", "max")


def load(name: str) -> tuple[Any, str]:
    """The AnnData of raw counts and its label column."""
    import anndata as ad

    import xtrimogene_sc as xtg

    if name == "pbmc68k":
        return xtg.datasets.pbmc68k_counts(), "bulk_labels"
    if name == "zheng":
        if not DATA.exists():
            sys.exit(f"{DATA} not found (the shared data folder sits beside the checkout)")
        return ad.read_h5ad(DATA), "cell_type"
    sys.exit(f"unknown data set {name!r}: use pbmc68k or zheng")


# ------------------------------------------------------------------------------ metrics
def score(
    embedding: np.ndarray, labels: np.ndarray, depth: np.ndarray, seed: int
) -> dict[str, float]:
    """kNN accuracy and Leiden ARI of one embedding (:func:`xtrimogene_sc.tl.score_embedding`),
    and the share of read depth (log10 total counts) a ridge regression recovers from it."""
    from xtrimogene_sc.tl._scores import depth_r2, knn_accuracy, leiden_ari

    return {
        "knn_acc": knn_accuracy(embedding, labels, n_neighbors=15, n_folds=5, seed=seed),
        "leiden_ari": leiden_ari(embedding, labels, n_neighbors=15, seed=seed)[0],
        "depth_r2": depth_r2(embedding, depth, seed=seed),
    }


# ------------------------------------------------------------------------------ methods
def pca_embedding(adata: Any, seed: int) -> np.ndarray:
    """scanpy's standard PCA (:func:`xtrimogene_sc.tl._scores.pca_reference`)."""
    from xtrimogene_sc.tl._scores import pca_reference

    return pca_reference(adata, seed=seed)


def scvi_embedding(adata: Any, seed: int, max_epochs: int | None) -> np.ndarray:
    """scVI latent means (10 dimensions) on raw counts."""
    import scvi

    scvi.settings.seed = seed
    data = adata.copy()
    scvi.model.SCVI.setup_anndata(data)
    model = scvi.model.SCVI(data, n_latent=10)
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    return model.get_latent_representation()


def xtg_embeddings(
    adata: Any, seed: int, recipe: Any, poolings: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], float]:
    """Train a model from scratch with ``recipe``; embeddings by pooling and training seconds."""
    import torch

    import xtrimogene_sc as xtg

    torch.manual_seed(seed)
    data = adata.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(data)
        start = time.perf_counter()
        model = recipe.pretrain(data, enable_progress_bar=False, logger=False,
                                enable_checkpointing=False, enable_model_summary=False)  # fmt: skip
        seconds = time.perf_counter() - start
        out = {p: model.get_latent_representation(pooling=p, progress=False) for p in poolings}
    return out, seconds


# ------------------------------------------------------------------------------ sweep
def sweep_variants() -> dict[str, Any]:
    """Named recipes around the default, one lever changed at a time."""
    from xtrimogene_sc.model import SMALL_DATA_RECIPE as base

    return {
        "default": base,
        "vocabulary zeros": replace(base, zero_mask_scope="vocabulary"),
        "steps x0.5": replace(base, steps=base.steps // 2, min_epochs=None),
        "steps x2": replace(base, steps=base.steps * 2, min_epochs=None),
        "min epochs 40": replace(base, min_epochs=40),
        "min epochs 80": replace(base, min_epochs=80),
        "min epochs 160": replace(base, min_epochs=160),
        "40 passes": replace(base, steps=1600, min_epochs=40),  # 40 on pbmc68k too
        "batch 32": replace(base, batch_size=32, steps=base.steps // 2),  # the same 60 passes
        "batch 32 lr x2": replace(base, batch_size=32, steps=base.steps // 2, lr=base.lr * 2),
        "lr x0.3": replace(base, lr=base.lr * 0.3),
        "lr x3": replace(base, lr=base.lr * 3),
        "mask 0.5": replace(base, mask_ratio_nonzero=0.5),
        "mask 0.15": replace(base, mask_ratio_nonzero=0.15),
        "preset small": replace(base, preset="small", encoder_depth=None),
        "encoder 2 layers": replace(base, encoder_depth=None),
        "full decoder": replace(base, decoder_mode="full"),
        "dropout 0": replace(base, encoder_dropout=0.0),
        "all genes": replace(base, n_top_genes=None),
        "genes 500": replace(base, n_top_genes=500),
        "genes 1000": replace(base, n_top_genes=1000),
        "genes 4000": replace(base, n_top_genes=4000),
        "contrastive 0": replace(base, contrastive_weight=0.0),
        "contrastive 0.3": replace(base, contrastive_weight=0.3),
        "contrastive 1": replace(base, contrastive_weight=1.0),
        "contrastive 3": replace(base, contrastive_weight=3.0),
        "contrastive thin 1": replace(base, contrastive_weight=1.0, contrastive_view="thin"),
        "cell reconstruction 0": replace(base, cell_reconstruction_weight=0.0),
        "cell reconstruction 3": replace(base, cell_reconstruction_weight=3.0),
        "cell reconstruction 30": replace(base, cell_reconstruction_weight=30.0),
        "cell reconstruction unscaled 3": replace(
            base, cell_reconstruction_weight=3.0, cell_reconstruction_scaled=False
        ),
        "tied read-out": replace(base, cell_reconstruction_query="tied"),
        "mlp read-out": replace(base, cell_reconstruction_query="mlp"),
        "tied read-out width 32": replace(base, cell_reconstruction_query="tied", encoder_dim=32),
        "width 32": replace(base, encoder_dim=32),
        "tied read-out width 32 80 passes": replace(
            base, cell_reconstruction_query="tied", encoder_dim=32, min_epochs=80
        ),
    }


SWEEP = "see sweep_variants()"


def run(args: argparse.Namespace) -> pd.DataFrame:
    """Every (data set, seed, method) row: method, pooling, metrics, seconds."""
    from xtrimogene_sc.model import SMALL_DATA_RECIPE

    rows = []
    for name in args.datasets:
        adata, key = load(name)
        if args.quick:
            adata = adata[np.random.default_rng(0).permutation(adata.n_obs)[:200]].copy()
        labels = adata.obs[key].astype(str).to_numpy()
        depth = np.asarray(adata.X.sum(axis=1)).ravel()
        for seed in args.seeds:
            if not args.sweep:
                for method in [m for m in ("pca", "scvi") if m in args.methods]:
                    start = time.perf_counter()
                    emb = (pca_embedding(adata, seed) if method == "pca"
                           else scvi_embedding(adata, seed, args.scvi_epochs))  # fmt: skip
                    rows.append({"data": name, "seed": seed, "method": method, "pooling": "-",
                                 "seconds": time.perf_counter() - start,
                                 **score(emb, labels, depth, seed)})  # fmt: skip
                    _log(rows[-1])
            variants = sweep_variants() if args.sweep else {"recipe": SMALL_DATA_RECIPE}
            if args.variants:
                variants = {k: variants[k] for k in args.variants}
            for label, recipe in variants.items():
                if args.quick:
                    recipe = replace(recipe, steps=1, epochs=1)
                poolings = POOLINGS if args.sweep else (recipe.pooling,)
                embeddings, seconds = xtg_embeddings(adata, seed, recipe, poolings)
                for pooling, emb in embeddings.items():
                    rows.append({"data": name, "seed": seed, "method": f"xtg {label}",
                                 "pooling": pooling, "seconds": seconds,
                                 **score(emb, labels, depth, seed)})  # fmt: skip
                    _log(rows[-1])
    return pd.DataFrame(rows)


def _log(row: dict[str, Any]) -> None:
    print(f"# {row['data']} seed {row['seed']} {row['method']} [{row['pooling']}]: kNN "
          f"{row['knn_acc']:.3f} ARI {row['leiden_ari']:.3f} depth R2 {row['depth_r2']:.2f} "
          f"({row['seconds']:.0f} s)",
          file=sys.stderr, flush=True)  # fmt: skip


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds, per data set, method and pooling, and the seeds."""
    grouped = frame.groupby(["data", "method", "pooling"], sort=False)
    out = grouped[["knn_acc", "leiden_ari", "depth_r2", "seconds"]].agg(["mean", "std"])
    out.columns = [f"{a} {b}" for a, b in out.columns]
    out["seeds"] = grouped["seed"].nunique()
    return out.reset_index()


def report(summary: pd.DataFrame) -> str:
    """Markdown table, then one verdict line per data set and metric against PCA."""
    lines = [
        "| data | method | pooling | seeds | kNN accuracy (5-fold) | Leiden ARI | depth R² | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in summary.iterrows():
        lines.append(
            f"| {r['data']} | {r['method']} | {r['pooling']} | {r['seeds']} | "
            f"{r['knn_acc mean']:.3f} ± {np.nan_to_num(r['knn_acc std']):.3f} | "
            f"{r['leiden_ari mean']:.3f} ± {np.nan_to_num(r['leiden_ari std']):.3f} | "
            f"{r['depth_r2 mean']:.2f} | {r['seconds mean']:.0f} |"
        )
    lines.append("")
    for name, part in summary.groupby("data", sort=False):
        pca = part[part["method"] == "pca"]
        ours = part[part["method"].str.startswith("xtg")]
        if pca.empty or ours.empty:
            continue
        best = ours.sort_values("knn_acc mean").iloc[-1]
        for metric in ("knn_acc", "leiden_ari"):
            a, b = best[f"{metric} mean"], pca[f"{metric} mean"].iloc[0]
            verdict = "at least PCA" if a >= b else "BELOW PCA"
            digits = 3 if f"{a:.3f}" != f"{b:.3f}" else 4  # show a difference that 3 digits hide
            lines.append(f"- {name}: {best['method']} [{best['pooling']}] {metric} {a:.{digits}f} "
                         f"vs PCA {b:.{digits}f}: {verdict}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Parse options, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="pbmc68k,zheng")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sweep", action="store_true", help="train the sweep's variants")
    parser.add_argument("--methods", default="pca,scvi",
                        help="baselines to run beside the recipe (comma-separated)")  # fmt: skip
    parser.add_argument("--variants", default=None,
                        help="comma-separated sweep variants to train (default: all)")  # fmt: skip
    parser.add_argument("--scvi-epochs", type=int, default=None, help="default: scvi-tools'")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", default=None, help="also write every row to this CSV")
    parser.add_argument("--quick", action="store_true", help="200 cells, 1 epoch, pbmc68k")
    parser.add_argument("--from-csv", nargs="*", default=None,
                        help="summarise the rows of these --csv files instead of running")  # fmt: skip
    parser.add_argument("--write", nargs="*", default=None,
                        help="markdown files whose result block to replace")  # fmt: skip
    args = parser.parse_args(argv)
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    args.variants = [v for v in (args.variants or "").split(",") if v]
    args.methods = [m for m in args.methods.split(",") if m]
    if args.quick:
        args.datasets, args.seeds, args.scvi_epochs = ["pbmc68k"], [0], 2
    import torch

    torch.set_num_threads(args.threads)
    if args.from_csv:  # rows of earlier runs (e.g. one process per data set), nothing is run
        frame = pd.concat(
            [pd.read_csv(path, float_precision="round_trip") for path in args.from_csv],
            ignore_index=True,
        )
    else:
        frame = run(args)
    if args.csv:
        frame.to_csv(args.csv, index=False)
    summary = summarise(frame)
    from xtrimogene_sc.model import SMALL_DATA_RECIPE

    text = report(summary) + f"\n\nRecipe: `{asdict(SMALL_DATA_RECIPE)}`."
    if str(ROOT) not in sys.path:  # allow `python benchmarks/bench_small_data.py`
        sys.path.insert(0, str(ROOT))
    from benchmarks._results import record

    record(text, args.write, "small-data")
    return summary


if __name__ == "__main__":
    main()
