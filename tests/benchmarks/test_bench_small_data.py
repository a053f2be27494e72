"""The small-data benchmark scores PCA, scVI and the recipe on the same cells (``--quick``)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_small_data.py"


def test_quick_run_scores_every_method_with_the_same_metrics(load_script, capsys, tmp_path):
    bench = load_script("bench_small_data", SCRIPT)
    rows = tmp_path / "rows.csv"
    summary = bench.main(["--quick", "--threads", "1", "--csv", str(rows)])
    assert list(summary["method"]) == ["pca", "scvi", "xtg recipe"]
    for metric in ("knn_acc mean", "leiden_ari mean", "depth_r2 mean"):
        assert summary[metric].between(-1.0, 1.0).all(), metric
    assert (summary["knn_acc mean"] > 0.2).all()  # 200 cells, 10 labels: chance is ~0.1-0.2
    out = capsys.readouterr().out
    assert "| data | method | pooling | kNN accuracy (5-fold) | Leiden ARI | depth R² |" in out
    assert "vs PCA" in out
    assert "Recipe:" in out

    # rows saved by separate runs are summarised into one table without running anything
    again = bench.main(["--from-csv", str(rows), str(rows), "--threads", "1"])
    assert list(again["method"]) == list(summary["method"])
    assert (again["knn_acc mean"].to_numpy() == summary["knn_acc mean"].to_numpy()).all()
    assert (again["knn_acc std"] == 0).all()  # the same rows twice: no spread
