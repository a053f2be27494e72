"""The integration benchmark: studies mapped to one label set, and a quick end-to-end run."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scib_metrics", reason="the integration extra is not installed")

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def test_every_study_label_maps_to_a_coarse_type_except_the_progenitors(load_script):
    studies = load_script("_studies", BENCH / "_studies.py")
    import xtrimogene_sc as xtg

    bundled = set(xtg.datasets.pbmc68k_counts().obs["bulk_labels"].astype(str))
    assert bundled - set(studies.COARSE["pbmc68k"]) == {"CD34+"}
    for name, table in studies.COARSE.items():
        assert set(table.values()) <= set(studies.COARSE_TYPES), name
    union = studies.three_studies()
    assert set(union.obs["batch"]) == {"zheng", "kang", "pbmc68k"}
    assert set(union.obs["coarse_type"]) == set(studies.COARSE_TYPES)
    assert (union.obs["batch"] == "kang").sum() == 936  # the controls only
    # genes are current vocabulary symbols, each once: IGJ (bundled) is read as JCHAIN
    assert union.var_names.is_unique
    assert set(union.var_names) <= set(xtg.GeneVocab.default().names)
    assert "JCHAIN" in union.var_names
    assert union.n_obs == 2140 + 936 + 700 - 13  # the 13 CD34+ cells have no counterpart


def test_quick_run_scores_every_method_and_resumes_from_its_cache(
    load_script, tmp_path, monkeypatch
):
    bench = load_script("bench_integration", BENCH / "bench_integration.py")
    args = ["--quick", "--settings", "kang_conditions", "--out", str(tmp_path)]
    frame = bench.main(args)
    assert list(frame["method"]) == list(bench.METHODS)
    scores = frame[["Bio conservation", "Batch correction", "Total", "knn_acc"]].to_numpy()
    assert np.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all()
    by_method = frame.set_index("method")
    # Harmony exists to mix batches: it must mix the conditions more than the PCA it corrects
    assert by_method.loc["harmony", "Batch correction"] > by_method.loc["pca", "Batch correction"]
    assert (tmp_path / "integration.csv").exists()

    def never(*_args, **_kwargs):
        raise AssertionError("a cached embedding was computed again")

    for method in ("pca", "scvi", "xtg"):
        monkeypatch.setattr(bench, method, never)
    cells = bench.subsample(bench.SETTINGS["kang_conditions"](), 240, seed=0)
    options = argparse.Namespace(methods=list(bench.METHODS), out=str(tmp_path), quick=True)
    cached = bench.embeddings(cells, "kang_conditions", 0, options)
    assert list(cached) == list(bench.METHODS)
    assert all(values.shape[0] == cells.n_obs for values in cached.values())
    summary = bench.main(["--from-csv", str(tmp_path / "integration.csv")])
    np.testing.assert_allclose(summary["Total"], frame["Total"])


def test_quick_query_annotation_scores_each_method_on_each_query_study(load_script, tmp_path):
    bench = load_script("bench_query_annotation", BENCH / "bench_query_annotation.py")
    rows = tmp_path / "rows.csv"
    frame = bench.main(["--quick", "--csv", str(rows), "--integration-cache", str(tmp_path)])
    assert set(frame["query"]) == {"kang", "pbmc68k"}
    assert set(frame["method"]) == {"logreg counts", "scanvi", "xtg classifier"}
    scores = frame[["accuracy", "macro_f1", "unknown"]].to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    # coarse PBMC types from log counts: far above the 1-in-5 of guessing, even on 300 cells
    assert (frame.loc[frame["method"] == "logreg counts", "accuracy"] > 0.6).all()
    again = bench.main(["--from-csv", str(rows)])
    np.testing.assert_allclose(again["accuracy"], frame["accuracy"])


def test_a_prediction_below_the_threshold_is_unknown_and_novel_types_are_scored_apart(
    load_script,
):
    bench = load_script("bench_query_annotation", BENCH / "bench_query_annotation.py")
    classes = np.array(["B", "NK"])
    proba = np.array([[0.9, 0.1], [0.45, 0.55], [0.4, 0.35], [0.2, 0.8]])
    truth = np.array(["B", "B", "NK", "Dendritic"])
    got = bench.scores(classes, proba, truth)
    assert got["accuracy"] == pytest.approx(1 / 3)  # B right, B called NK, NK unknown
    assert got["unknown"] == pytest.approx(1 / 3)
    assert got["novel_unknown"] == 0.0  # the dendritic cell was confidently called NK
