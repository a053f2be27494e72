"""Perturbation-response benchmark: xTrimoGene against the baselines that beat deep models.

Data sets and protocols (every method sees the same training cells and predicts the same test
conditions from the same control cells):

* **Synthetic Perturb-seq** (``xtg.datasets.synthetic_perturbseq``, known ground truth), GEARS
  protocol, one fold per seed: 75% of the single-gene perturbations are trained on; of the pairs
  whose genes are both trained singles ("combo seen 2/2"), 75% are trained on; the test set is the
  other singles ("unseen single") and pairs (seen 2/2, seen 1/2, seen 0/2).
* **Kang 2018 PBMCs** (control vs interferon-beta), scGen protocol: leave one cell type out. The
  stimulated cells of the held-out type are removed from training; its stimulated profile is
  predicted from its own control cells. One fold per cell type.
* Any other ``*.h5ad`` with a PROVENANCE file under ``<data>/perturbation/``: genetic data get
  the GEARS protocol, treatments with cell types the leave-one-cell-type-out protocol.
* **Real CRISPR screens** under ``<data>/perturbation_genetic/`` (Papalexi 2021: one target a
  cell, three replicates): unseen targets, held out in groups and reported apart for targets
  that are and are not measured genes, and seen targets in a held-out replicate; the knocked-out
  gene's own change is compared too (``benchmarks/_screen.py``).

Methods: the xTrimoGene perturbation model with a frozen backbone **pretrained on the fold's
training cells only** (tiny preset, masked decoder; never the held-out perturbed cells), the same
model on an untrained backbone (a control: what the pretrained embeddings add), and the baselines
``no_change``, ``mean_shift``, ``additive`` and ``linear``. Scores from ``xtg.tl.perturbation_metrics``
per test condition, averaged per fold and category; mean ± sd over folds. ``--quick`` is a smoke
test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

import xtrimogene_sc as xtg
from xtrimogene_sc.model import (
    SMALL_DATA_RECIPE,
    PerturbationBaseline,
    TrainingRecipe,
    XTrimoGenePerturbation,
)

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python benchmarks/<this script>.py`
    sys.path.insert(0, str(ROOT))
from benchmarks._results import mean_sd, record  # noqa: E402
from benchmarks._screen import (  # noqa: E402
    own_change,
    replicate_key,
    screen_folds,
    split_replicate,
)

CONDITION_KEYS = ("condition", "perturbation", "perturbation_name", "guide_identity", "gene")
CONTROL_LABELS = ("ctrl", "control", "non-targeting", "NT", "unperturbed", "CTRL")
CELL_TYPE_KEYS = ("cell_type", "celltype", "cell_types", "cell_label")
SCORES = ("pearson_delta", "pearson_delta_de", "mse_de", "direction_de")
BASELINES = ("no_change", "mean_shift", "additive", "linear")
MODEL = "xTrimoGene (pretrained on the fold)"
CONTROL_MODEL = "xTrimoGene (untrained backbone)"
SYNTHETIC = {"cells_per_condition": 20, "n_control": 600}  # else the simulator's defaults
SYNTHETIC_QUICK = {
    "n_genes": 150, "n_programs": 4, "program_size": 15, "n_single": 16, "n_combos": 12,
    "cells_per_condition": 10, "n_control": 100, "library_size": 2500.0,
}  # fmt: skip


# ---------------------------------------------------------------------- data sets
def synthetic(args: argparse.Namespace) -> dict:
    params = SYNTHETIC_QUICK if args.quick else SYNTHETIC
    adata = xtg.datasets.synthetic_perturbseq(**params, seed=0)
    XTrimoGenePerturbation.setup_anndata(adata)
    n = adata.obs["condition"].nunique() - 1
    name = f"synthetic Perturb-seq ({adata.n_obs} cells, {adata.n_vars} genes, {n} perturbations)"
    return {"name": name, "adata": adata, "protocol": "gears"}


def discover(data_dir: Path, args: argparse.Namespace) -> list[dict]:
    """Perturbation h5ad files with a PROVENANCE file, their keys detected from ``obs``."""
    found = []
    paths = [p for name in ("perturbation", "perturbation_genetic")
             for p in sorted((data_dir / name).glob("*.h5ad"))]  # fmt: skip
    if args.datasets:
        paths = [p for p in paths if any(d in p.stem for d in args.datasets)]
    for path in paths:
        if not list(path.parent.glob(f"{path.stem}*PROVENANCE*")):
            print(f"skip {path}: no PROVENANCE file beside it")
            continue
        adata = ad.read_h5ad(path)
        if "counts" in adata.layers:
            adata.X = adata.layers["counts"]
        entry = _register(path, adata)
        if entry is not None:
            if args.quick:
                entry["adata"] = _subsample(entry["adata"], 400)
            found.append(entry)
    if not found:
        print(f"no perturbation h5ad files with a PROVENANCE file under {data_dir}")
    return found


def _register(path: Path, adata: ad.AnnData) -> dict | None:
    key = next((k for k in CONDITION_KEYS if k in adata.obs), None)
    labels = set(adata.obs[key].astype(str)) if key else set()
    control = next((c for c in CONTROL_LABELS if c in labels), None)
    if key is None or control is None:
        print(f"skip {path}: no condition column with a control label among {CONTROL_LABELS}")
        return None
    cell_type_key = next((k for k in CELL_TYPE_KEYS if k in adata.obs), None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        XTrimoGenePerturbation.setup_anndata(
            adata, condition_key=key, control=control, cell_type_key=cell_type_key
        )
    kind = adata.uns["xtg_perturbation"]["condition_type"]
    if kind == "treatment" and cell_type_key is None:
        print(f"skip {path}: treatment data without a cell-type column (no protocol for it)")
        return None
    protocol = "gears" if kind == "genetic" else "leave_one_cell_type_out"
    if kind == "genetic" and replicate_key(adata) is not None:  # a screen: one target a cell
        protocol = "screen"
    name = f"{path.stem} ({adata.n_obs} cells, {kind}, {protocol.replace('_', '-')})"
    return {"name": name, "adata": adata, "protocol": protocol}


def _subsample(adata: ad.AnnData, n: int) -> ad.AnnData:
    rows = np.sort(np.random.default_rng(0).permutation(adata.n_obs)[:n])
    return adata[rows].copy()


# ---------------------------------------------------------------------- folds
def gears_folds(adata: ad.AnnData, seeds: list[int]) -> list[dict]:
    setup = adata.uns["xtg_perturbation"]
    key, control = setup["condition_key"], setup["control"]
    names = sorted(set(adata.obs[key].astype(str)) - {control})
    parse = {n: tuple(sorted(set(n.split("+")) - {control})) for n in names}
    singles = [n for n in names if len(parse[n]) == 1]
    combos = [n for n in names if len(parse[n]) > 1]
    folds = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        test_singles = set(rng.choice(singles, size=len(singles) // 4, replace=False))
        train_genes = {parse[s][0] for s in singles if s not in test_singles}
        seen = {c: sum(g in train_genes for g in parse[c]) for c in combos}
        seen2 = [c for c in combos if seen[c] == len(parse[c])]
        test_seen2 = (
            set(rng.choice(seen2, size=len(seen2) // 4, replace=False)) if seen2 else set()
        )
        categories = {"unseen single": sorted(test_singles), "combo seen 2/2": sorted(test_seen2)}
        for k in (1, 0):
            categories[f"combo seen {k}/2"] = sorted(c for c in combos if seen[c] == k)
        test = set().union(*categories.values())
        folds.append({"fold": f"seed {seed}", "test": test, "categories": categories,
                      "cell_type": None})  # fmt: skip
    return folds


def loco_folds(adata: ad.AnnData) -> list[dict]:
    setup = adata.uns["xtg_perturbation"]
    key, control, type_key = setup["condition_key"], setup["control"], setup["cell_type_key"]
    obs = adata.obs[[key, type_key]].astype(str)
    treatments = sorted(set(obs[key]) - {control})
    folds = []
    for cell_type in sorted(set(obs[type_key])):
        in_type = obs[type_key] == cell_type
        if (
            not ((obs[key] == control) & in_type).any()
            or not ((obs[key] != control) & in_type).any()
        ):
            continue
        folds.append({"fold": cell_type, "test": set(treatments), "cell_type": cell_type,
                      "categories": {"held-out cell type": treatments}})  # fmt: skip
    return folds


def split(adata: ad.AnnData, fold: dict) -> tuple[ad.AnnData, ad.AnnData, ad.AnnData]:
    """Training cells, control cells to predict from, and observed test cells (+ controls)."""
    if fold.get("replicate") is not None:
        return split_replicate(adata, fold)
    setup = adata.uns["xtg_perturbation"]
    conditions = adata.obs[setup["condition_key"]].astype(str)
    is_control = (conditions == setup["control"]).to_numpy()
    held = conditions.isin(fold["test"]).to_numpy()
    if fold["cell_type"] is not None:
        in_type = (adata.obs[setup["cell_type_key"]].astype(str) == fold["cell_type"]).to_numpy()
        held &= in_type
        ctrl = adata[is_control & in_type].copy()
        observed = adata[(held | is_control) & in_type].copy()
    else:
        ctrl = adata[is_control].copy()
        observed = adata[held | is_control].copy()
    return adata[~held].copy(), ctrl, observed


# ---------------------------------------------------------------------- methods
def pretrain(train: ad.AnnData, args: argparse.Namespace) -> xtg.XTrimoGene:
    if args.pretrained is not None:
        return xtg.XTrimoGene.load(args.pretrained)
    return pretrain_backbone(train, SMALL_DATA_RECIPE, args.pretrain_epochs)


def pretrain_backbone(
    train: ad.AnnData, recipe: TrainingRecipe, epochs: int | None
) -> xtg.XTrimoGene:
    """``recipe``'s model pretrained on a copy of ``train`` from ``torch.manual_seed(0)``
    (``epochs=None``: the recipe's own schedule)."""
    data = train.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(data)
    torch.manual_seed(0)
    return recipe.pretrain(
        data, max_epochs=epochs, enable_progress_bar=False, enable_model_summary=False,
        logger=False,
    )  # fmt: skip


def untrained_backbone(recipe: TrainingRecipe) -> xtg.XTrimoGene:
    """``recipe``'s architecture with the initial weights of ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    return xtg.XTrimoGene(None, preset=recipe.preset, **recipe.config_overrides())


def program_probe(backbone: xtg.XTrimoGene, adata: ad.AnnData) -> float:
    """Accuracy of a logistic regression recovering each program gene's simulated program from
    its static gene embedding (5-fold cross-validation): do the embeddings know the programs?"""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    program = adata.var["program"].to_numpy()
    genes = adata.var_names[program >= 0]
    table = backbone.module.gene_embedding.weight.detach().cpu().numpy()
    embedding = table[xtg.GeneVocab.default().positions(list(genes))]
    embedding = (embedding - embedding.mean(0)) / embedding.std(0).clip(1e-6)
    probe = LogisticRegression(max_iter=2000)
    return float(cross_val_score(probe, embedding, program[program >= 0], cv=5).mean())


def run_methods(train, ctrl, observed, fold, args) -> tuple[list[dict], float]:
    rows, pretrain_seconds = [], 0.0
    predictors = {m: (lambda m=m: _baseline(train, m)) for m in BASELINES if m in args.methods}
    if MODEL in args.methods:
        start = time.perf_counter()
        backbone = pretrain(train, args)
        pretrain_seconds = time.perf_counter() - start
        predictors[MODEL] = lambda: _model(train, backbone, args)
        if "program" in train.var:
            rows.append({"category": "", "method": "program probe, pretrained backbone",
                         "probe": program_probe(backbone, train)})  # fmt: skip
    if CONTROL_MODEL in args.methods:
        untrained = untrained_backbone(SMALL_DATA_RECIPE)
        predictors[CONTROL_MODEL] = lambda: _model(train, untrained, args)
        if "program" in train.var:
            rows.append({"category": "", "method": "program probe, untrained backbone",
                         "probe": program_probe(untrained, train)})  # fmt: skip
    for method, build in predictors.items():
        start = time.perf_counter()
        predictor = build()
        for category, conditions in fold["categories"].items():
            scores = _score(predictor, ctrl, observed, conditions, fold)
            if scores is not None:
                rows.append({"category": category, "method": method, **scores})
        seconds = time.perf_counter() - start
        for row in rows:
            row.setdefault("seconds", seconds)
    return rows, pretrain_seconds


def _baseline(train, method):
    baseline = PerturbationBaseline(train, method=method)
    baseline.train()
    return baseline


def _model(train, backbone, args):
    model = XTrimoGenePerturbation(train, backbone=backbone, gene_representation=args.genes)
    model.train(max_steps=args.head_steps)
    return model


def _score(predictor, ctrl, observed, conditions, fold) -> dict | None:
    if not conditions:
        return None
    cell_types = None if fold["cell_type"] is None else [fold["cell_type"]]
    try:
        pred = predictor.predict(ctrl, conditions, cell_types=cell_types, aggregate="mean")
    except ValueError as err:  # e.g. additive on genes never perturbed alone: not applicable
        if "never perturbed alone" in str(err):
            return None
        raise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = xtg.tl.perturbation_metrics(pred, observed=observed)
    own = own_change(pred, observed) if fold.get("screen") else {}
    return {**table[list(SCORES)].mean().to_dict(), "n_conditions": len(table), **own}


# ---------------------------------------------------------------------- run and report
def run_dataset(entry: dict, args: argparse.Namespace) -> pd.DataFrame:
    adata = entry["adata"]
    if entry["protocol"] == "gears":
        folds = gears_folds(adata, args.seeds)
    elif entry["protocol"] == "screen":
        folds = [{**f, "screen": True} for f in screen_folds(adata, args.seeds[0])]
        folds = folds if args.max_folds is None else folds[: args.max_folds] + folds[-1:]
    else:
        folds = [
            f
            for f in loco_folds(adata)
            if args.cell_types in (None, []) or f["fold"] in args.cell_types
        ]
        folds = folds[: args.max_folds]
    results = []
    for fold in folds:
        train, ctrl, observed = split(adata, fold)
        rows, pretrain_seconds = run_methods(train, ctrl, observed, fold, args)
        n_programs = adata.var["program"].max() + 1 if "program" in adata.var else np.nan
        for row in rows:
            results.append({"dataset": entry["name"], "fold": fold["fold"],
                            "n_programs": n_programs, **row})  # fmt: skip
        results.append({"dataset": entry["name"], "fold": fold["fold"], "category": "",
                        "method": "xTrimoGene pretraining (shared)", "seconds": pretrain_seconds})  # fmt: skip
        best = max(
            rows, key=lambda r: np.nan_to_num(r.get("pearson_delta_de", -1), nan=-1), default=None
        )
        print(f"  fold {fold['fold']}: {len(rows)} scores; pretraining {pretrain_seconds:.0f}s; "
              f"best DE Pearson {best['method'] if best else '-'}", flush=True)  # fmt: skip
    return pd.DataFrame(results)


def table(results: pd.DataFrame) -> str:
    lines = []
    for name, group in results.groupby("dataset", sort=False):
        n_folds = group["fold"].nunique()
        lines += [f"**{name}**, {n_folds} folds (mean ± sd over folds)", ""]
        lines += ["| test set | method | Pearson Δ (all genes) | Pearson Δ (top-20 DE) | "
                  "MSE (top-20 DE) | direction (top-20 DE) | conditions | seconds / fold |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        scored = group[group["category"].fillna("") != ""]
        for (category, method), rows in scored.groupby(["category", "method"], sort=False):
            cells = " | ".join(mean_sd(rows[s]) for s in SCORES)
            n = rows["n_conditions"].mean()
            lines.append(
                f"| {category} | {method} | {cells} | {n:.0f} | {rows['seconds'].mean():.0f} |"
            )
        shared = group[group["method"] == "xTrimoGene pretraining (shared)"]
        if shared["seconds"].sum() > 0:
            lines.append(f"| – | xTrimoGene pretraining (shared) | – | – | – | – | – | "
                         f"{shared['seconds'].mean():.0f} |")  # fmt: skip
        lines.append("")
        if "own_change_observed" in group and group["own_change_observed"].notna().any():
            lines += _own_change_lines(scored)
        probes = group[group["method"].str.startswith("program probe")]
        if len(probes):
            n_programs = group["n_programs"].dropna().iloc[0] if "n_programs" in group else np.nan
            found = {m.split(", ")[1]: mean_sd(r["probe"]) for m, r in probes.groupby("method")}
            lines += [f"Do the backbone's gene embeddings know the simulated programs? A logistic "
                      f"regression recovers a program gene's program from its static embedding "
                      f"with accuracy {found.get('pretrained backbone', '–')} (pretrained) and "
                      f"{found.get('untrained backbone', '–')} (untrained); chance "
                      f"{1 / n_programs:.3f}.", ""]  # fmt: skip
    return "\n".join(lines)


def _own_change_lines(scored: pd.DataFrame) -> list[str]:
    """The knocked-out genes' own change, observed and predicted, by test set and method."""
    lines = ["The knocked-out gene's own change (measured targets; mean log-normalised change, "
             "and the share of targets whose predicted change has the observed sign):", "",
             "| test set | method | observed | predicted | same sign |", "|---|---|---|---|---|"]  # fmt: skip
    rows = scored[scored["own_change_observed"].notna()]
    for (category, method), group in rows.groupby(["category", "method"], sort=False):
        lines.append(
            f"| {category} | {method} | {mean_sd(group['own_change_observed'])} | "
            f"{mean_sd(group['own_change_predicted'])} | {mean_sd(group['own_change_agree'])} |"
        )
    return [*lines, ""]


def settings_text(args: argparse.Namespace, total_seconds: float) -> str:
    backbone = (
        f"weights from `{args.pretrained}`" if args.pretrained is not None else
        f"`SMALL_DATA_RECIPE` ({SMALL_DATA_RECIPE})"
        + (f" but {args.pretrain_epochs} epochs" if args.pretrain_epochs is not None else "")
        + ", pretrained on each fold's training cells"
    )  # fmt: skip
    return (
        f"Run {dt.date.today().isoformat()} with `python benchmarks/bench_perturbation.py"
        f"{' --quick' if args.quick else ''}` on {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch thread(s), CPU only, on a 2-core machine shared with "
        f"other jobs; total {total_seconds / 60:.1f} min. xTrimoGene backbone: {backbone}; "
        f"head: {args.head_steps} steps, gene representation `{args.genes}`. "
        f"Synthetic folds: seeds {args.seeds}. xtrimogene_sc {xtg.__version__}."
    )


def parse_args() -> argparse.Namespace:
    methods = [MODEL, CONTROL_MODEL, *BASELINES]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, one fold: smoke test")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(__file__).parents[2] / "shared" / "data"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-folds", type=int, default=None,
                        help="at most this many leave-one-cell-type-out folds")  # fmt: skip
    parser.add_argument("--cell-types", nargs="*", default=None,
                        help="only these leave-one-cell-type-out folds")  # fmt: skip
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--datasets", nargs="*", default=None,
                        help="only the staged files whose name contains one of these")  # fmt: skip
    parser.add_argument("--pretrained", type=Path, default=None,
                        help="a saved XTrimoGene used for every fold instead of pretraining "
                        "(its corpus must not contain the held-out perturbed cells)")  # fmt: skip
    parser.add_argument(
        "--pretrain-epochs",
        type=int,
        default=None,
        help="default: the recipe's optimiser steps on the fold's cells",
    )
    parser.add_argument("--head-steps", type=int, default=1500)
    parser.add_argument("--genes", default="static", choices=["static", "context", "both"])
    parser.add_argument("--methods", nargs="+", default=methods, choices=methods)
    parser.add_argument("--write", nargs="*", type=Path, default=None,
                        help="markdown files whose result block to replace")  # fmt: skip
    parser.add_argument("--csv", type=Path, default=None, help="per-fold scores as CSV")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.max_folds = args.seeds[:1], 1
        args.pretrain_epochs, args.head_steps = 1, 60
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    start = time.perf_counter()
    results = []
    entries = ([] if args.skip_synthetic else [synthetic(args)]) + discover(args.data_dir, args)
    for entry in entries:
        print(f"{entry['name']}: {entry['protocol']}", flush=True)
        results.append(run_dataset(entry, args))
        if args.csv is not None:  # after every data set, so a long run keeps what it did
            pd.concat(results, ignore_index=True).to_csv(args.csv, index=False)
    results = pd.concat(results, ignore_index=True)
    text = table(results) + "\n" + settings_text(args, time.perf_counter() - start)
    record(text, args.write, "perturbation")


if __name__ == "__main__":
    main()
