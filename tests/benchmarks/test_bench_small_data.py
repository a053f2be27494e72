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
    assert (
        "| data | method | pooling | seeds | kNN accuracy (5-fold) | Leiden ARI | depth R² |"
        in out
    )
    assert "vs PCA" in out
    assert "Recipe:" in out

    # rows saved by separate runs are summarised into one table without running anything
    again = bench.main(["--from-csv", str(rows), str(rows), "--threads", "1"])
    assert list(again["method"]) == list(summary["method"])
    assert (again["knn_acc mean"].to_numpy() == summary["knn_acc mean"].to_numpy()).all()
    assert (again["knn_acc std"] == 0).all()  # the same rows twice: no spread
    assert (again["seeds"] == 1).all()  # ... and one seed, not two


def test_every_sweep_variant_is_a_valid_configuration_that_the_command_line_can_name(load_script):
    """``--variants`` splits on commas, and each variant's overrides must make a valid config."""
    from xtrimogene_sc.module import XTrimoGeneConfig

    bench = load_script("bench_small_data", SCRIPT)
    variants = bench.sweep_variants()
    assert {"default", "tied read-out", "tied read-out width 32"} <= set(variants)
    for name, recipe in variants.items():
        assert "," not in name, name
        config = XTrimoGeneConfig.preset(recipe.preset, **recipe.config_overrides())
        assert config.objective.cell_reconstruction_query == recipe.cell_reconstruction_query
    assert (
        XTrimoGeneConfig.preset(
            "tiny", **variants["tied read-out width 32"].config_overrides()
        ).encoder_dim
        == 32
    )
