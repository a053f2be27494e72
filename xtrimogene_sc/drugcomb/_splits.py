"""Cross-validation splits of drug combinations, and the leakage check each one promises.

Every split returns a list of ``(train, test)`` pairs of integer row positions. What each one
promises (and :func:`check_split` verifies, refusing a split that breaks it):

``"random"``
    no (unordered drug pair, cell line) triplet on both sides, so replicate measurements of a
    triplet never straddle train and test; the same pair is seen in other cell lines.
``"drug_pair"``
    no unordered drug pair on both sides: a test pair is new in every cell line.
``"cell_line"``
    no cell line on both sides.
``"drug"``
    every test combination holds at least one drug that the training rows never contain.
    Drugs are partitioned into folds; a fold's test rows are the combinations with any of its
    drugs, its training rows those with none (so a combination of drugs from two folds is
    tested twice, and some rows are in neither set of a fold).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd

from xtrimogene_sc.drugcomb._data import COLUMNS

SplitKind = Literal["random", "drug_pair", "cell_line", "drug"]
Fold = tuple[np.ndarray, np.ndarray]
_N_EXAMPLES = 3


class LeakageError(ValueError):
    """A split puts on both sides what its kind promises to keep apart."""


def pair_keys(combinations: pd.DataFrame) -> np.ndarray:
    """Order-free key of each row's drug pair (``"A|B"`` with A <= B)."""
    a = combinations[COLUMNS.DRUG_A].astype(str).to_numpy()
    b = combinations[COLUMNS.DRUG_B].astype(str).to_numpy()
    first, second = np.minimum(a, b), np.maximum(a, b)
    return np.char.add(np.char.add(first.astype(str), "|"), second.astype(str))


def triplet_keys(combinations: pd.DataFrame) -> np.ndarray:
    """Order-free key of each row's (drug pair, cell line)."""
    lines = combinations[COLUMNS.CELL_LINE].astype(str).to_numpy().astype(str)
    return np.char.add(np.char.add(pair_keys(combinations), "@"), lines)


def _group_folds(groups: np.ndarray, n_folds: int, seed: int) -> list[Fold]:
    """Assign whole groups to folds, balancing row counts; ties broken at random."""
    names, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if len(names) < n_folds:
        msg = f"{len(names)} groups cannot fill {n_folds} folds; use n_folds <= {len(names)}"
        raise ValueError(msg)
    order = np.random.default_rng(seed).permutation(len(names))
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold_of_group, load = np.empty(len(names), dtype=np.int64), np.zeros(n_folds)
    for group in order:
        fold = int(np.argmin(load))
        fold_of_group[group], load[fold] = fold, load[fold] + sizes[group]
    fold_of_row = fold_of_group[inverse]
    return [
        (np.flatnonzero(fold_of_row != k), np.flatnonzero(fold_of_row == k))
        for k in range(n_folds)
    ]


def random_folds(combinations: pd.DataFrame, *, n_folds: int = 5, seed: int = 0) -> list[Fold]:
    """K folds over (pair, cell line) triplets; replicates of a triplet stay together.

    Parameters
    ----------
    combinations
        Rows with ``drug_a``, ``drug_b`` and ``cell_line``.
    n_folds
        Number of folds.
    seed
        Seed of the fold assignment.
    """
    return _group_folds(triplet_keys(combinations), n_folds, seed)


def leave_drug_pair_out(
    combinations: pd.DataFrame, *, n_folds: int = 5, seed: int = 0
) -> list[Fold]:
    """K folds over unordered drug pairs (A+B and B+A are the same pair).

    Parameters
    ----------
    combinations
        Rows with ``drug_a``, ``drug_b`` and ``cell_line``.
    n_folds
        Number of folds.
    seed
        Seed of the fold assignment.
    """
    return _group_folds(pair_keys(combinations), n_folds, seed)


def leave_cell_line_out(
    combinations: pd.DataFrame, *, n_folds: int = 5, seed: int = 0
) -> list[Fold]:
    """K folds over cell lines.

    Parameters
    ----------
    combinations
        Rows with ``drug_a``, ``drug_b`` and ``cell_line``.
    n_folds
        Number of folds.
    seed
        Seed of the fold assignment.
    """
    return _group_folds(combinations[COLUMNS.CELL_LINE].astype(str).to_numpy(), n_folds, seed)


def leave_drug_out(combinations: pd.DataFrame, *, n_folds: int = 5, seed: int = 0) -> list[Fold]:
    """K folds over drugs: test rows hold a held-out drug, training rows none.

    Parameters
    ----------
    combinations
        Rows with ``drug_a``, ``drug_b`` and ``cell_line``.
    n_folds
        Number of drug folds.
    seed
        Seed of the drug partition.
    """
    a = combinations[COLUMNS.DRUG_A].astype(str).to_numpy()
    b = combinations[COLUMNS.DRUG_B].astype(str).to_numpy()
    drugs = np.unique(np.concatenate([a, b]))
    if len(drugs) < n_folds:
        msg = f"{len(drugs)} drugs cannot fill {n_folds} folds; use n_folds <= {len(drugs)}"
        raise ValueError(msg)
    parts = np.array_split(np.random.default_rng(seed).permutation(drugs), n_folds)
    folds = []
    for held_out in parts:
        touches = np.isin(a, held_out) | np.isin(b, held_out)
        folds.append((np.flatnonzero(~touches), np.flatnonzero(touches)))
    return folds


def folds_from_column(combinations: pd.DataFrame, column: str, *, kind: SplitKind) -> list[Fold]:
    """Folds given by a column of fold numbers, each checked against ``kind``'s promise.

    Parameters
    ----------
    combinations
        Rows with ``drug_a``, ``drug_b``, ``cell_line`` and ``column``.
    column
        Column of fold ids (e.g. ``"deepsynergy_fold"``).
    kind
        What the folds promise (see :func:`check_split`).

    Raises
    ------
    LeakageError
        A fold breaks the promise of ``kind``.
    """
    fold_of_row = combinations[column].to_numpy()
    folds = [
        (np.flatnonzero(fold_of_row != k), np.flatnonzero(fold_of_row == k))
        for k in pd.unique(fold_of_row)
    ]
    for train, test in folds:
        check_split(combinations, train, test, kind=kind)
    return folds


SPLITS: dict[str, Callable[..., list[Fold]]] = {
    "random": random_folds,
    "drug_pair": leave_drug_pair_out,
    "cell_line": leave_cell_line_out,
    "drug": leave_drug_out,
}


def make_folds(
    combinations: pd.DataFrame, kind: SplitKind, *, n_folds: int = 5, seed: int = 0
) -> list[Fold]:
    """Folds of ``kind`` (``"random"``, ``"drug_pair"``, ``"cell_line"`` or ``"drug"``).

    Parameters
    ----------
    combinations
        Rows with ``drug_a``, ``drug_b`` and ``cell_line``.
    kind
        Which split.
    n_folds
        Number of folds.
    seed
        Seed of the fold assignment.
    """
    if kind not in SPLITS:
        msg = f"unknown split {kind!r}; choose one of {sorted(SPLITS)}"
        raise ValueError(msg)
    return SPLITS[kind](combinations, n_folds=n_folds, seed=seed)


def n_groups(combinations: pd.DataFrame, kind: SplitKind) -> int:
    """How many units a split of ``kind`` distributes (triplets, pairs, cell lines or drugs)."""
    if kind == "random":
        return len(np.unique(triplet_keys(combinations)))
    if kind == "drug_pair":
        return len(np.unique(pair_keys(combinations)))
    if kind == "cell_line":
        return combinations[COLUMNS.CELL_LINE].nunique()
    drugs = combinations[[COLUMNS.DRUG_A, COLUMNS.DRUG_B]].to_numpy().ravel()
    return len(pd.unique(drugs))


def check_split(
    combinations: pd.DataFrame, train: np.ndarray, test: np.ndarray, *, kind: SplitKind
) -> None:
    """Refuse a split that breaks the promise of ``kind`` (see the module docstring).

    Parameters
    ----------
    combinations
        All rows; ``train`` and ``test`` index them by position.
    train, test
        Integer row positions.
    kind
        ``"random"``, ``"drug_pair"``, ``"cell_line"`` or ``"drug"``.

    Raises
    ------
    LeakageError
        With the number of leaking groups and examples.
    """
    train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
    n = len(combinations)
    for rows in (train, test):
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            msg = f"row positions must lie in [0, {n}) for {n} combinations"
            raise IndexError(msg)
    shared_rows = np.intersect1d(train, test)
    if len(shared_rows):
        examples = shared_rows[:_N_EXAMPLES].tolist()
        msg = f"{len(shared_rows)} rows are in both train and test (e.g. positions {examples})"
        raise LeakageError(msg)
    if kind == "drug":
        _check_drug_split(combinations, train, test)
        return
    if kind not in _PROMISES:
        msg = f"unknown split {kind!r}; choose one of {sorted(SPLITS)}"
        raise ValueError(msg)
    key_of, what, why = _PROMISES[kind]
    values = key_of(combinations)
    both = np.intersect1d(values[train], values[test])
    if len(both):
        msg = (
            f"this {kind!r} split leaks: {len(both)} {what} are in both train and test "
            f"(e.g. {both[:_N_EXAMPLES].tolist()}); {why}. Build the folds with "
            f"xtg.drugcomb.make_folds(combinations, {kind!r})"
        )
        raise LeakageError(msg)


def _cell_line_keys(combinations: pd.DataFrame) -> np.ndarray:
    return combinations[COLUMNS.CELL_LINE].astype(str).to_numpy()


# kind -> (key of a row, what the keys are, why they must not be shared)
_PROMISES: dict[str, tuple[Callable[[pd.DataFrame], np.ndarray], str, str]] = {
    "random": (
        triplet_keys, "drug-pair/cell-line combinations", "replicates must stay on one side"
    ),
    "drug_pair": (
        pair_keys, "drug pairs (A+B and B+A are one pair)",
        "a test pair must be new in every cell line",
    ),
    "cell_line": (_cell_line_keys, "cell lines", "a test cell line must be new"),
}  # fmt: skip


def _check_drug_split(combinations: pd.DataFrame, train: np.ndarray, test: np.ndarray) -> None:
    a = combinations[COLUMNS.DRUG_A].astype(str).to_numpy()
    b = combinations[COLUMNS.DRUG_B].astype(str).to_numpy()
    seen = np.union1d(a[train], b[train])
    both_seen = np.isin(a[test], seen) & np.isin(b[test], seen)
    if both_seen.any():
        rows = test[both_seen]
        examples = [f"{a[i]}+{b[i]}" for i in rows[:_N_EXAMPLES]]
        msg = (
            f"this 'drug' split leaks: {len(rows)} test combinations have both drugs in the "
            f"training rows (e.g. {examples}); every test combination needs a drug that training "
            "never saw. Build the folds with xtg.drugcomb.make_folds(combinations, 'drug')"
        )
        raise LeakageError(msg)
