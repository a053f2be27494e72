"""The recipe speed benchmark times the baseline revision and the current code in child runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_recipe_speed.py"


def test_recipe_speed_benchmark_times_the_baseline_and_the_current_code(load_script, capsys):
    bench = load_script("bench_recipe_speed", SCRIPT)
    rows = bench.main(["--cells", "48", "--steps", "3", "--repeats", "1", "--threads", "1",
                       "--datasets", "pbmc68k"])  # fmt: skip
    assert [r["setting"] for r in rows] == [f"baseline ({bench.BASELINE})", "current"]
    assert all(r["cpu"] > 0 and r["wall"] > 0 and r["cpu_ratio"] > 0 for r in rows)
    assert rows[0]["cpu_ratio"] == 1.0
    out = capsys.readouterr().out
    assert "| pbmc68k | 1 | current |" in out
    assert "CPU vs baseline" in out
    assert f"# CPU: {bench.cpu_model()}" in out
    assert "# host CPU time stolen by other guests during the runs: " in out


def test_cpu_model_reads_the_model_name_line(load_script, tmp_path):
    bench = load_script("bench_recipe_speed", SCRIPT)
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t: fma\n")
    assert bench.cpu_model(info) == "AMD EPYC 9654"
    assert bench.cpu_model(tmp_path / "absent")  # falls back to what platform knows


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
