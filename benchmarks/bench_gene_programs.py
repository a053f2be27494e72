"""Which part of the recipe teaches the gene embeddings the simulated co-expression programs?

``bench_perturbation.py`` probes the pretrained backbone's static gene embeddings: a logistic
regression recovers each program gene's program from its embedding (5-fold cross-validation,
chance 1 / number of programs). This script repeats that probe for the recipe and for variants
with one part changed, on the same synthetic Perturb-seq data, folds and training cells
(``bench_perturbation.gears_folds`` and ``split``), so that a change in the probe can be traced
to a part of the recipe:

* ``recipe``: :data:`~xtrimogene_sc.model.SMALL_DATA_RECIPE` as it is;
* ``no read-out``: the same without the whole-profile read-out (``cell_reconstruction_weight=0``),
  so masked regression alone;
* ``earlier recipe``: the recipe of 2026-11-30 (two encoder layers, dropout 0.1, no read-out);
* ``untrained``: the recipe's architecture with its initial weights.

Each variant is pretrained from ``torch.manual_seed(0)`` for ``--pretrain-epochs`` epochs, as
the perturbation benchmark does. Prints one row per variant (mean ± sd over folds) and the
per-fold values.

    python benchmarks/bench_gene_programs.py --pretrain-epochs 5
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import xtrimogene_sc as xtg
from xtrimogene_sc.model import SMALL_DATA_RECIPE, TrainingRecipe

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python benchmarks/<this script>.py`
    sys.path.insert(0, str(ROOT))
from benchmarks.bench_perturbation import (  # noqa: E402
    gears_folds,
    pretrain_backbone,
    program_probe,
    split,
    synthetic,
    untrained_backbone,
)


def variants() -> dict[str, TrainingRecipe | None]:
    """The recipe and its one-change variants; ``None`` stands for the untrained backbone."""
    base = SMALL_DATA_RECIPE
    return {
        "recipe": base,
        "no read-out": replace(base, cell_reconstruction_weight=0.0),
        "earlier recipe": replace(
            base, encoder_depth=None, encoder_dropout=0.1, cell_reconstruction_weight=0.0
        ),
        "untrained": None,
    }


def backbone(recipe: TrainingRecipe | None, train, epochs: int) -> xtg.XTrimoGene:
    """``recipe`` pretrained on ``train`` for ``epochs`` epochs, as the perturbation benchmark
    pretrains its backbone (for ``None``: the recipe's architecture, untrained)."""
    if recipe is None:
        return untrained_backbone(SMALL_DATA_RECIPE)
    return pretrain_backbone(train, recipe, epochs)


def probe_table(scores: dict[str, list[float]], seeds: list[int], chance: float) -> str:
    """Markdown: one row per variant, mean ± sd over folds, then the per-fold values."""
    lines = [
        "| variant | program probe (mean ± sd) | "
        + " | ".join(f"fold seed {s}" for s in seeds)
        + " |",
        "|---|---|" + "---|" * len(seeds),
    ]
    for name, values in scores.items():
        sd = np.std(values, ddof=1) if len(values) > 1 else 0.0
        cells = " | ".join(f"{v:.3f}" for v in values)
        lines.append(f"| {name} | {np.mean(values):.3f} ± {sd:.3f} | {cells} |")
    return "\n".join(lines) + f"\n\nChance: {chance:.3f}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, one fold, one epoch")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument(
        "--variants", nargs="+", default=list(variants()), choices=list(variants())
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.pretrain_epochs = args.seeds[:1], 1
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)
    start = time.perf_counter()
    adata = synthetic(args)["adata"]
    every = variants()
    chosen = {name: every[name] for name in args.variants}
    scores: dict[str, list[float]] = {name: [] for name in chosen}
    for fold in gears_folds(adata, args.seeds):
        train = split(adata, fold)[0]
        for name, recipe in chosen.items():
            scores[name].append(
                program_probe(backbone(recipe, train, args.pretrain_epochs), train)
            )
            print(f"{fold['fold']} | {name}: {scores[name][-1]:.3f}", flush=True)
    programs = adata.var["program"].to_numpy()
    chance = 1 / len(set(programs[programs >= 0]))
    print("\n" + probe_table(scores, args.seeds, chance))
    print(
        f"\n{adata.n_obs} simulated cells; each variant pretrained for {args.pretrain_epochs} "
        f"epoch(s) on each fold's training cells; 1 torch thread; "
        f"{(time.perf_counter() - start) / 60:.1f} min."
    )


if __name__ == "__main__":
    main()
