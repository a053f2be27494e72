"""The recipe speed benchmark trains every setting on a few bundled cells and compares them."""

from __future__ import annotations

from pathlib import Path

from torch import nn

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_recipe_speed.py"


def test_recipe_speed_benchmark_times_every_setting(load_script, capsys):
    bench = load_script("bench_recipe_speed", SCRIPT)
    medians = bench.main(["--cells", "48", "--epochs", "1", "--repeats", "1", "--threads", "1"])
    assert set(medians) == {"torch defaults", "2 layers, dropout 0.1", "recipe"}
    assert all(value > 0 for value in medians.values())
    out = capsys.readouterr().out
    assert "| torch defaults |" in out
    assert "vs torch defaults" in out
    assert "# host CPU time stolen by other guests during the runs: " in out


def test_the_baseline_setting_swaps_the_dropouts_and_puts_them_back(load_script):
    import xtrimogene_sc as xtg
    from xtrimogene_sc.nn._blocks import Dropout

    bench = load_script("bench_recipe_speed", SCRIPT)
    adata = xtg.datasets.pbmc68k_counts()[:32].copy()
    xtg.XTrimoGene.setup_anndata(adata)
    model = xtg.XTrimoGene(adata, preset="tiny")

    def kinds():
        return {type(m) for m in model.module.modules() if isinstance(m, nn.Dropout)}

    with bench.torch_defaults(model):
        assert kinds() == {nn.Dropout}
    assert kinds() == {Dropout}


def test_steal_share_reads_the_eighth_counter_of_the_cpu_line(load_script, tmp_path):
    bench = load_script("bench_recipe_speed", SCRIPT)
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 10 50 0 0 0 40 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
    before = bench.cpu_counters(stat)
    assert before == [100, 0, 10, 50, 0, 0, 0, 40]
    after = [190, 0, 10, 50, 0, 0, 0, 50]  # 90 user, 10 stolen
    assert bench.steal_share(before, after) == 0.1
    assert bench.steal_share(before, before) is None  # no time passed
    assert bench.steal_share(None, after) is None
    assert bench.cpu_counters(tmp_path / "absent") is None
    for text in ("intr 1 2 3\n", "cpu  1 2 3 4 5 6 7\n"):  # not the cpu line; no steal counter
        stat.write_text(text)
        assert bench.cpu_counters(stat) is None
