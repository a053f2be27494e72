from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xtrimogene_sc.drugcomb import (
    LeakageError,
    check_split,
    folds_from_column,
    leave_cell_line_out,
    leave_drug_out,
    leave_drug_pair_out,
    make_folds,
    random_folds,
)
from xtrimogene_sc.drugcomb._splits import n_groups, pair_keys, triplet_keys

KINDS = ["random", "drug_pair", "cell_line", "drug"]


@pytest.fixture
def rows(synthetic) -> pd.DataFrame:
    return synthetic["combinations"]


def _swap(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"drug_a": "drug_b", "drug_b": "drug_a"})


def test_keys_ignore_drug_order(rows):
    swapped = _swap(rows)
    assert (pair_keys(rows) == pair_keys(swapped)).all()
    assert (triplet_keys(rows) == triplet_keys(swapped)).all()
    assert len(np.unique(pair_keys(rows))) == 66  # 12 drugs, every unordered pair once


@pytest.mark.parametrize("kind", KINDS)
def test_every_split_keeps_its_promise(rows, kind):
    folds = make_folds(rows, kind, n_folds=4, seed=1)
    assert len(folds) == 4
    tested = np.zeros(len(rows), dtype=int)
    for train, test in folds:
        check_split(rows, train, test, kind=kind)  # raises on a leak
        assert len(train)
        assert len(test)
        assert not np.intersect1d(train, test).size
        tested[test] += 1
    assert (tested >= 1).all()  # every row is tested
    if kind != "drug":  # group splits partition the rows
        assert (tested == 1).all()


def test_splits_are_seeded(rows):
    a = leave_cell_line_out(rows, n_folds=4, seed=3)
    b = leave_cell_line_out(rows, n_folds=4, seed=3)
    c = leave_cell_line_out(rows, n_folds=4, seed=4)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))


def test_group_splits_hold_out_whole_groups(rows):
    for train, test in leave_cell_line_out(rows, n_folds=4):
        lines = rows["cell_line"].to_numpy()
        assert not set(lines[train]) & set(lines[test])
    for train, test in leave_drug_pair_out(rows, n_folds=5):
        assert not set(pair_keys(rows.iloc[train])) & set(pair_keys(rows.iloc[test]))
    for train, test in random_folds(rows, n_folds=5):
        assert not set(triplet_keys(rows.iloc[train])) & set(triplet_keys(rows.iloc[test]))


def test_leave_drug_out_never_trains_on_a_test_drug(rows):
    for train, test in leave_drug_out(rows, n_folds=4, seed=0):
        seen = set(rows.iloc[train][["drug_a", "drug_b"]].to_numpy().ravel())
        test_rows = rows.iloc[test]
        unseen = ~test_rows["drug_a"].isin(seen) | ~test_rows["drug_b"].isin(seen)
        assert unseen.all()
        assert len(seen) == 9  # 12 drugs, 3 held out


def test_a_pair_in_the_other_order_is_still_the_same_pair(rows):
    train, test = np.arange(0, 8), np.arange(8, 16)  # rows 0-7: pair 0 in 8 cell lines
    leaky = rows.copy()
    leaky.iloc[8:16, :3] = _swap(rows.iloc[0:8]).iloc[:, :3].to_numpy()  # B+A in the test rows
    leaky.loc[8:15, "cell_line"] = rows.loc[0:7, "cell_line"].to_numpy()
    with pytest.raises(LeakageError, match="drug pairs .* are in both train and test"):
        check_split(leaky, train, test, kind="drug_pair")
    with pytest.raises(LeakageError, match="combinations are in both"):
        check_split(leaky, train, test, kind="random")  # same triplets, swapped drugs


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("drug_pair", "drug pairs"),
        ("cell_line", "cell lines are in both"),
        ("drug", "have both drugs in the training rows"),
    ],
)
def test_a_row_random_split_is_refused_where_it_leaks(rows, kind, match):
    order = np.random.default_rng(0).permutation(len(rows))
    train, test = order[: len(rows) // 2], order[len(rows) // 2 :]
    with pytest.raises(LeakageError, match=match):
        check_split(rows, train, test, kind=kind)


def test_replicates_never_straddle_a_random_split(rows):
    replicated = pd.concat([rows, rows.iloc[:5]], ignore_index=True)  # 5 triplets measured twice
    for train, test in random_folds(replicated, n_folds=5):
        check_split(replicated, train, test, kind="random")
    with pytest.raises(LeakageError, match="replicates must stay on one side"):
        check_split(
            replicated, np.arange(len(rows)), np.arange(len(rows), len(replicated)), kind="random"
        )


def test_bad_splits_and_arguments(rows):
    with pytest.raises(LeakageError, match="rows are in both"):
        check_split(rows, np.arange(10), np.arange(5, 20), kind="random")
    with pytest.raises(IndexError, match="row positions"):
        check_split(rows, np.arange(10), np.array([len(rows)]), kind="random")
    with pytest.raises(ValueError, match="unknown split"):
        make_folds(rows, "tissue")
    with pytest.raises(ValueError, match="unknown split"):
        check_split(rows, np.arange(3), np.arange(3, 6), kind="tissue")
    with pytest.raises(ValueError, match="8 groups cannot fill 9 folds"):
        leave_cell_line_out(rows, n_folds=9)
    with pytest.raises(ValueError, match="12 drugs cannot fill 13 folds"):
        leave_drug_out(rows, n_folds=13)


def test_folds_from_a_column_are_checked(rows):
    by_line = rows.assign(fold=rows["cell_line"].str[-1].astype(int) % 4)
    folds = folds_from_column(by_line, "fold", kind="cell_line")
    assert len(folds) == 4
    by_row = rows.assign(fold=np.arange(len(rows)) % 3)
    with pytest.raises(LeakageError, match="cell lines are in both"):
        folds_from_column(by_row, "fold", kind="cell_line")


def test_n_groups(rows):
    assert n_groups(rows, "random") == len(rows)
    assert n_groups(rows, "drug_pair") == 66
    assert n_groups(rows, "cell_line") == 8
    assert n_groups(rows, "drug") == 12
