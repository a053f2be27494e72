"""What ``X_xtg`` does across batches: the scIB metrics beside PCA, Harmony and scVI.

Two settings on staged real PBMCs (``benchmarks/_studies.py`` says how labels were mapped):

* ``kang_conditions``: Kang 2018 control vs IFN-beta stimulated, batch = condition;
* ``three_studies``: sorted PBMCs (Zheng 2017), Kang controls and the bundled 700 PBMCs on
  their shared genes, batch = study.

Methods, on the same cells and genes: ``pca`` (scanpy's PCA of log-normalised counts, not
integrated), ``harmony`` (harmonypy on that PCA), ``scvi`` (scVI with the batch key, scvi-tools'
defaults), ``xtg`` (:data:`~xtrimogene_sc.model.SMALL_DATA_RECIPE` trained from scratch on all
the cells, mean pooling) and ``xtg_harmony`` (Harmony on ``X_xtg``, what a user would try next).
Scores: :func:`xtrimogene_sc.tl.score_integration` (scIB's bio conservation, batch correction
and total) and the 15-NN accuracy of the coarse cell type, for each seed. Embeddings are cached
in ``--out`` so that an interrupted run resumes.

    python benchmarks/bench_integration.py --seeds 0 1 2 --write --figure
    python benchmarks/bench_integration.py --quick          # a small smoke run (tested)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import mean_sd, record
from _studies import SETTINGS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "INTEGRATION_RESULTS.md"
DOCS_PAGE = ROOT / "docs" / "integration.md"
FIGURES = ROOT / "docs" / "_static"
METHODS = ("pca", "harmony", "scvi", "xtg", "xtg_harmony")
# measured on request (--methods ... xtg_batch_readout); *_harmony: Harmony on that embedding
LEVERS = ("xtg_thin", "xtg_batch_readout", "xtg_batch_readout_harmony")
SHOWN = ("Bio conservation", "Batch correction", "Total", "iLISI", "KBET", "knn_acc")


# ------------------------------------------------------------------------------ methods
def pca(adata: Any, seed: int, quick: bool) -> np.ndarray:
    """scanpy's PCA of log-normalised counts (:func:`xtrimogene_sc.tl._scores.pca_reference`)."""
    from xtrimogene_sc.tl._scores import pca_reference

    return pca_reference(adata, seed=seed)


def harmony_on(embedding: np.ndarray, batches: pd.Series, seed: int) -> np.ndarray:
    """Harmony's corrected embedding (harmonypy's defaults), cells x dimensions."""
    import harmonypy

    meta = pd.DataFrame({"batch": batches.astype(str).to_numpy()})
    corrected = np.asarray(
        harmonypy.run_harmony(embedding, meta, "batch", random_state=seed, verbose=False).Z_corr
    )
    return corrected if corrected.shape[0] == len(meta) else corrected.T


def scvi(adata: Any, seed: int, quick: bool) -> np.ndarray:
    """scVI latent means (scvi-tools' defaults: 10 dimensions, its epoch rule) with the batch."""
    import scvi as scvi_tools

    scvi_tools.settings.seed = seed
    data = adata.copy()
    scvi_tools.model.SCVI.setup_anndata(data, batch_key="batch")
    model = scvi_tools.model.SCVI(data)
    model.train(max_epochs=2 if quick else None, enable_progress_bar=False)
    return model.get_latent_representation()


def train_recipe(adata: Any, seed: int, quick: bool, **overrides: Any) -> Any:
    """The small-data recipe (with ``overrides``) trained from scratch on every cell, with the
    batch column registered (the model reads it only with ``batch_readout=True``)."""
    from dataclasses import replace

    import torch

    import xtrimogene_sc as xtg_pkg
    from xtrimogene_sc.model import SMALL_DATA_RECIPE

    recipe = replace(SMALL_DATA_RECIPE, **overrides)
    torch.manual_seed(seed)
    data = adata.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg_pkg.XTrimoGene.setup_anndata(data, batch_key="batch" if "batch" in data.obs else None)
        return recipe.pretrain(
            data, max_epochs=1 if quick else None, enable_progress_bar=False, logger=False,
            enable_checkpointing=False, enable_model_summary=False,
        )  # fmt: skip


def xtg(adata: Any, seed: int, quick: bool, **overrides: Any) -> np.ndarray:
    """``X_xtg`` of :func:`train_recipe`'s model (mean pooling, the recipe's)."""
    model = train_recipe(adata, seed, quick, **overrides)
    return model.get_latent_representation(progress=False)


def xtg_thin(adata: Any, seed: int, quick: bool) -> np.ndarray:
    """The recipe plus a contrastive term between each cell and a copy thinned to 10-100% of its
    depth (weight 0.3): read depth, which differs between batches, made a nuisance to ignore."""
    return xtg(adata, seed, quick, contrastive_weight=0.3, contrastive_view="thin")


def xtg_batch_readout(adata: Any, seed: int, quick: bool) -> np.ndarray:
    """The recipe with per-batch gene offsets in its whole-profile read-out (``batch_readout``,
    scVI-style): the pooled cell need not carry what sets the batches apart on average."""
    return xtg(adata, seed, quick, batch_readout=True)


def embeddings(adata: Any, setting: str, seed: int, args: argparse.Namespace) -> dict:
    """Every method's embedding for one seed, read from or written to the cache in ``--out``."""
    out: dict[str, np.ndarray] = {}
    for method in args.methods:
        cache = (
            Path(args.out) / f"{setting}{'_quick' if args.quick else ''}_{method}_seed{seed}.npy"
        )
        if cache.exists():
            out[method] = np.load(cache)
            continue
        start = time.perf_counter()
        if method.endswith("harmony"):
            base = "pca" if method == "harmony" else method.removesuffix("_harmony")
            if base not in out:
                out[base] = embeddings_of(adata, setting, seed, args, base)
            out[method] = harmony_on(out[base], adata.obs["batch"], seed)
        else:
            out[method] = globals()[method](adata, seed, args.quick)
        np.save(cache, out[method])
        print(f"  {setting} seed {seed} {method}: {time.perf_counter() - start:.0f} s")
    return out


def embeddings_of(adata: Any, setting: str, seed: int, args: argparse.Namespace, method: str):
    """One method's embedding, through the cache."""
    single = argparse.Namespace(**{**vars(args), "methods": [method]})
    return embeddings(adata, setting, seed, single)[method]


# ------------------------------------------------------------------------------ scoring
def score(adata: Any, reps: dict[str, np.ndarray], seed: int) -> pd.DataFrame:
    """scIB metrics and coarse-type kNN accuracy of every embedding, one row each."""
    from xtrimogene_sc.tl import score_integration
    from xtrimogene_sc.tl._scores import knn_accuracy

    data = adata.copy()
    data.obsm["X_unintegrated"] = reps["pca"] if "pca" in reps else pca(adata, seed, quick=False)
    for method, values in reps.items():
        data.obsm[method] = values
    table = score_integration(
        data, list(reps), batch_key="batch", labels_key="coarse_type",
        unintegrated_rep="X_unintegrated",
    )  # fmt: skip
    labels = adata.obs["coarse_type"].astype(str).to_numpy()
    table["knn_acc"] = [
        knn_accuracy(values, labels, n_neighbors=15, n_folds=5, seed=seed)
        for values in reps.values()
    ]
    return table.rename_axis("method").reset_index()


def subsample(adata: Any, n_cells: int, seed: int) -> Any:
    """``n_cells`` cells drawn evenly from each batch (the quick run)."""
    rng = np.random.default_rng(seed)
    per_batch = n_cells // adata.obs["batch"].nunique()
    picked = [
        rng.choice(np.flatnonzero(adata.obs["batch"].to_numpy() == batch),
                   size=min(per_batch, int((adata.obs["batch"] == batch).sum())), replace=False)
        for batch in adata.obs["batch"].unique()
    ]  # fmt: skip
    return adata[np.sort(np.concatenate(picked))].copy()


def run(args: argparse.Namespace) -> pd.DataFrame:
    """Score every method of every setting and seed; the rows of all runs."""
    Path(args.out).mkdir(parents=True, exist_ok=True)
    data = {}
    for setting in args.settings:
        adata = SETTINGS[setting]()
        data[setting] = subsample(adata, 240, seed=0) if args.quick else adata
        print(f"{setting}: {data[setting].n_obs} cells x {data[setting].n_vars} genes")
    rows = []
    for seed in args.seeds:  # seed-major, so that a cut-short run has every setting's first seeds
        for setting, adata in data.items():
            reps = embeddings(adata, setting, seed, args)
            rows.append(score(adata, reps, seed).assign(setting=setting, seed=seed))
            if args.figure and seed == args.seeds[0]:
                from _integration_figure import umap_grid

                path = FIGURES / f"integration_{setting}.png"
                umap_grid(adata, reps, path, title=f"{setting} (seed {seed})")
                print(f"  wrote {path}")
    return pd.concat(rows, ignore_index=True)


def report(frame: pd.DataFrame) -> str:
    """One markdown table a setting: mean ± sd over seeds of the main scores."""
    blocks = []
    for setting, part in frame.groupby("setting", sort=False):
        n_seeds = part["seed"].nunique()
        lines = [
            f"**{setting}** ({n_seeds} seed{'s' if n_seeds > 1 else ''}; mean ± sd)",
            "",
            "| method | " + " | ".join(SHOWN) + " |",
            "|---|" + "---:|" * len(SHOWN),
        ]
        for method, rows in part.groupby("method", sort=False):
            cells = [mean_sd(rows[column]) for column in SHOWN]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + LEVERS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--quick", action="store_true",
                        help="240 cells a setting, 1 xTrimoGene and 2 scVI epochs")  # fmt: skip
    parser.add_argument("--out", default="benchmarks/.integration",
                        help="folder of the cached embeddings and the CSV")  # fmt: skip
    parser.add_argument("--figure", action="store_true", help="UMAPs of the first seed")
    parser.add_argument(
        "--write",
        action="store_true",
        help="record the tables in INTEGRATION_RESULTS.md and docs/integration.md",
    )
    parser.add_argument("--from-csv", nargs="+", help="only summarise the rows of earlier runs")
    args = parser.parse_args(argv)
    if args.from_csv:
        frame = pd.concat([pd.read_csv(path) for path in args.from_csv], ignore_index=True)
    else:
        frame = run(args)
        frame.to_csv(Path(args.out) / "integration.csv", index=False)
    record(report(frame), [RESULTS, DOCS_PAGE] if args.write else None, "integration")
    return frame


if __name__ == "__main__":
    main()
