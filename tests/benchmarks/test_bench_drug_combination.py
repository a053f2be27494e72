"""Smoke test of the drug-combination benchmark (``--quick``: a small subset, about a minute)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_drug_combination.py"
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, run_quick) -> tuple[str, pd.DataFrame]:
    for needed in ("drug_combination", "annotation"):
        if not (DATA / needed).exists():
            pytest.skip(f"shared data {DATA / needed} not found")
    csv_path = tmp_path_factory.mktemp("bench") / "quick.csv"
    stdout = run_quick(SCRIPT, "--csv", str(csv_path))
    return stdout, pd.read_csv(csv_path)


def test_every_method_runs_on_every_split(quick_run, load_script):
    stdout, rows = quick_run
    bench = load_script("_bench_drug_combination", SCRIPT)
    assert set(rows["split"]) == set(bench.SPLIT_TITLES)
    methods = set(rows["method"])
    assert len(methods) == 9
    assert {"ours, drugs only (no cell features)", "gradient boosting, drugs only"} <= methods
    assert any("X_xtg (tiny" in m for m in methods)
    for _, group in rows.groupby(["split", "method"]):
        assert len(group) >= 3  # folds
    for metric in ("auroc", "auprc", "balanced_accuracy"):
        values = rows[metric].dropna()
        assert len(values) > 0.9 * len(rows)
        assert values.between(0, 1).all()
    assert rows["pearson_r"].dropna().between(-1, 1).all()
    # the printed tables: one per split, with the published anchors in italics
    assert stdout.count("| method | AUROC | AUPRC | balanced accuracy | Pearson r (Loewe) |") == 4
    assert "*DeepDDS (reported; graph network, expression)* | ~0.93" in stdout
    assert "shared 2-core CPU" in stdout


def test_table_reports_mean_and_spread(load_script):
    bench = load_script("_bench_drug_combination", SCRIPT)
    results = pd.DataFrame(
        {
            "split": ["random"] * 3,
            "method": ["m"] * 3,
            "fold": [0, 1, 2],
            "auroc": [0.8, 0.9, 1.0],
            "auprc": [0.5, 0.5, 0.5],
            "balanced_accuracy": [np.nan] * 3,
            "pearson_r": [0.1, 0.2, 0.3],
            "seconds": [1.0, 2.0, 3.0],
        }
    )
    text = bench.table(results)
    assert "| m | 0.900 ± 0.100 | 0.500 ± 0.000 | – | 0.200 ± 0.100 | 2 |" in text
    assert "*XGBoost (reported in the DeepDDS paper)* | ~0.92" in text
