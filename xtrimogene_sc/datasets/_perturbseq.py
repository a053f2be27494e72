"""A seeded Perturb-seq simulator with known ground truth (CRISPRi-like knockdowns).

Genes belong to co-expression programs (modules): every cell draws one activity per program and
all genes of a program move with it, so the genes of a program are correlated in control cells.
Programs regulate each other through a sparse program-to-program matrix. Knocking down a gene
lowers its own expression and shifts the activity of the program it belongs to and of the
programs that one regulates, scaled by a gene-specific influence. Two genes of the same program
therefore have similar effects: a model that learns which genes are co-expressed (as a masked
autoencoder does) can transfer what it saw for one gene to another it never saw perturbed.

Combinations add the single-gene program shifts in log space, except for a chosen fraction of
pairs whose shifts interact: ``synergy`` (x1.8), ``buffering`` (x0.3) or ``epistasis`` (the
first gene's shift only). The knockdowns of both genes always apply.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from xtrimogene_sc.data._vocab import GeneVocab

CONTROL = "ctrl"
KNOCKDOWN_LOG_FOLD = -2.0  # ln scale: about 86% knockdown of the targeted gene
INTERACTIONS = {"synergy": 1.8, "buffering": 0.3, "epistasis": None}
_PROGRAM_SD = 0.8  # cell-to-cell sd of program activity (the co-expression signal)
_OVERDISPERSION_SHAPE = 10.0  # gamma-Poisson shape: mild extra-Poisson noise


def synthetic_perturbseq(
    *,
    n_genes: int = 300,
    n_programs: int = 10,
    program_size: int = 15,
    n_single: int = 60,
    n_combos: int = 60,
    cells_per_condition: int = 30,
    n_control: int = 800,
    interaction_fraction: float = 0.5,
    library_size: float = 2500.0,
    seed: int = 0,
) -> AnnData:
    """Simulated CRISPRi Perturb-seq counts with known single-gene and combination effects.

    Parameters
    ----------
    n_genes
        Measured genes, real vocabulary symbols drawn without replacement.
    n_programs, program_size
        Co-expression programs and genes per program; the other genes are background.
    n_single
        Genes perturbed alone; four in five are program genes, the rest background genes
        (which change only their own expression).
    n_combos
        Pairs of perturbed genes (drawn among the ``n_single`` genes).
    cells_per_condition
        Cells per perturbation (single or pair).
    n_control
        Control cells (``obs["condition"] == "ctrl"``).
    interaction_fraction
        Share of pairs whose program shifts interact; 0 makes every pair additive in log rate.
    library_size
        Mean total counts per cell (log-normal spread, sd 0.3 on the log scale).
    seed
        Seed of everything.

    Returns
    -------
    AnnData
        ``X`` and ``layers["counts"]``: ``float32`` CSR raw counts. ``obs["condition"]``
        (``"ctrl"``, ``"GENE"`` or ``"GENE_A+GENE_B"``), ``obs["n_perturbed"]`` (0, 1, 2).
        ``var["program"]``: program of each gene (-1: background). ``uns["perturbation_truth"]``:
        ``"log_fold_change"``, a conditions x genes DataFrame of the true effect on each gene's
        expression rate (natural log), and ``"interaction"``, a DataFrame with the type of each
        pair (``"additive"``, ``"synergy"``, ``"buffering"``, ``"epistasis"``).
        ``uns["xtg_dataset"]`` holds the arguments.
    """
    _validate(n_genes, n_programs, program_size, n_single, n_combos, interaction_fraction)
    rng = np.random.default_rng(seed)
    symbols = np.array([n for n in GeneVocab.default().names if not n.endswith("__chrM")])
    genes = rng.choice(symbols, size=n_genes, replace=False).astype(str)
    program = np.full(n_genes, -1)
    program[: n_programs * program_size] = np.repeat(np.arange(n_programs), program_size)
    program = rng.permutation(program)
    # program genes are well expressed (their co-variation is visible); background genes spread
    # from common to rarely detected, as in real data
    base = np.where(program >= 0, rng.normal(0.5, 0.6, n_genes), rng.normal(-1.0, 1.3, n_genes))
    loading = np.where(program >= 0, rng.uniform(0.6, 1.2, size=n_genes), 0.0)
    regulation = _program_network(n_programs, rng)

    targets = _perturbed_genes(program, n_single, rng)
    influence = np.where(program[targets] >= 0, rng.uniform(0.5, 1.5, size=len(targets)), 0.0)
    shifts = {
        int(g): influence[i] * regulation[program[g]] if program[g] >= 0 else np.zeros(n_programs)
        for i, g in enumerate(targets)
    }
    pairs = _pairs(targets, n_combos, rng)
    kinds = _interaction_kinds(len(pairs), interaction_fraction, rng)

    effects = {genes[g]: _gene_effect(shifts[g], (g,), program, loading) for g in targets}
    for (a, b), kind in zip(pairs, kinds, strict=True):
        shift = _combined_shift(shifts[a], shifts[b], kind)
        effects[f"{genes[a]}+{genes[b]}"] = _gene_effect(shift, (a, b), program, loading)

    conditions = [CONTROL] * n_control
    for name in effects:
        conditions += [name] * cells_per_condition
    counts = _sample_counts(conditions, effects, base, loading, program, library_size, rng)
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(conditions),
            "n_perturbed": [0 if c == CONTROL else c.count("+") + 1 for c in conditions],
        },
        index=pd.Index([f"cell_{i}" for i in range(len(conditions))]),
    )
    adata = AnnData(X=counts, obs=obs, var=pd.DataFrame({"program": program}, index=genes))
    adata.layers["counts"] = counts.copy()
    adata.uns["perturbation_truth"] = {
        "log_fold_change": pd.DataFrame(effects, index=genes).T,
        "interaction": pd.DataFrame(
            {
                "condition": [f"{genes[a]}+{genes[b]}" for a, b in pairs],
                "type": list(kinds),
            }
        ),
    }
    adata.uns["xtg_dataset"] = {
        "name": "synthetic_perturbseq",
        "params": {
            "n_genes": n_genes, "n_programs": n_programs, "program_size": program_size,
            "n_single": n_single, "n_combos": n_combos,
            "cells_per_condition": cells_per_condition, "n_control": n_control,
            "interaction_fraction": interaction_fraction, "library_size": library_size,
            "seed": seed,
        },
    }  # fmt: skip
    return adata


def _program_network(n_programs: int, rng: np.random.Generator) -> np.ndarray:
    """``(programs, programs)`` shifts: row ``k`` is what knocking down program ``k`` does.

    Each program lowers itself and regulates one or two other programs up or down.
    """
    regulation = np.diag(-rng.uniform(0.8, 1.4, size=n_programs))
    for k in range(n_programs):
        others = np.delete(np.arange(n_programs), k)
        for j in rng.choice(others, size=min(len(others), rng.integers(1, 3)), replace=False):
            regulation[k, j] = rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.0)
    return regulation


def _perturbed_genes(program: np.ndarray, n_single: int, rng: np.random.Generator) -> np.ndarray:
    """Four in five from programs (spread evenly over them), the rest from the background."""
    background = np.flatnonzero(program < 0)
    n_background = min(len(background), n_single // 5)
    by_program = [rng.permutation(np.flatnonzero(program == k)) for k in range(program.max() + 1)]
    # round-robin over programs so that every program has perturbed genes
    round_robin = [p[rank] for rank in range(max(map(len, by_program))) for p in by_program
                   if rank < len(p)]  # fmt: skip
    chosen = np.array(round_robin[: n_single - n_background], dtype=np.int64)
    extra = rng.choice(background, size=n_background, replace=False)
    return rng.permutation(np.concatenate([chosen, extra]))


def _pairs(targets: np.ndarray, n_combos: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    candidates = [(int(a), int(b)) for i, a in enumerate(targets) for b in targets[i + 1 :]]
    picked = rng.choice(len(candidates), size=n_combos, replace=False)
    return [candidates[i] for i in picked]


def _interaction_kinds(n_pairs: int, fraction: float, rng: np.random.Generator) -> list[str]:
    n_interacting = round(fraction * n_pairs)
    kinds = ["additive"] * (n_pairs - n_interacting)
    kinds += list(rng.choice(list(INTERACTIONS), size=n_interacting))
    return [str(k) for k in rng.permutation(kinds)]


def _combined_shift(shift_a: np.ndarray, shift_b: np.ndarray, kind: str) -> np.ndarray:
    if kind == "additive":
        return shift_a + shift_b
    if kind == "epistasis":
        return shift_a.copy()
    return INTERACTIONS[kind] * (shift_a + shift_b)


def _gene_effect(
    program_shift: np.ndarray, knocked: tuple[int, ...], program: np.ndarray, loading: np.ndarray
) -> np.ndarray:
    """Log-rate change of every gene: its program's shift times its loading, plus knockdowns."""
    effect = np.where(program >= 0, loading * program_shift[np.maximum(program, 0)], 0.0)
    effect[list(knocked)] += KNOCKDOWN_LOG_FOLD
    return effect


def _sample_counts(
    conditions: list[str],
    effects: dict[str, np.ndarray],
    base: np.ndarray,
    loading: np.ndarray,
    program: np.ndarray,
    library_size: float,
    rng: np.random.Generator,
) -> sp.csr_matrix:
    n_cells, n_genes = len(conditions), len(base)
    n_programs = int(program.max()) + 1
    activity = rng.normal(0.0, _PROGRAM_SD, size=(n_cells, n_programs))
    log_rate = base + np.where(program >= 0, loading * activity[:, np.maximum(program, 0)], 0.0)
    zero = np.zeros(n_genes)
    log_rate += np.stack([effects.get(c, zero) for c in conditions])
    rate = np.exp(log_rate - log_rate.max(axis=1, keepdims=True))
    rate /= rate.sum(axis=1, keepdims=True)
    library = library_size * rng.lognormal(-0.045, 0.3, size=(n_cells, 1))
    noise = rng.gamma(_OVERDISPERSION_SHAPE, 1.0 / _OVERDISPERSION_SHAPE, size=rate.shape)
    counts = rng.poisson(library * rate * noise).astype(np.float32)
    empty = counts.sum(axis=1) == 0
    counts[empty, np.argmax(base)] = 1.0  # every cell keeps at least one count
    return sp.csr_matrix(counts)


def _validate(
    n_genes: int,
    n_programs: int,
    program_size: int,
    n_single: int,
    n_combos: int,
    interaction_fraction: float,
) -> None:
    n_background = n_genes - n_programs * program_size
    if min(n_programs, program_size, n_single) < 1 or n_background < max(1, n_single // 5):
        msg = (
            f"need n_programs, program_size, n_single >= 1 and at least n_single // 5 background "
            f"genes; got n_genes={n_genes}, n_programs={n_programs}, program_size={program_size}, "
            f"n_single={n_single}"
        )
        raise ValueError(msg)
    if not 0 <= n_combos <= n_single * (n_single - 1) // 2:
        msg = f"n_combos must lie in [0, {n_single * (n_single - 1) // 2}], got {n_combos}"
        raise ValueError(msg)
    if not 0.0 <= interaction_fraction <= 1.0:
        msg = f"interaction_fraction must lie in [0, 1], got {interaction_fraction}"
        raise ValueError(msg)
