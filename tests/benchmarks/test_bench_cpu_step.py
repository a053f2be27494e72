"""The CPU training-step benchmark runs on a few real cells and times every configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_cpu_step.py"


def test_cpu_step_benchmark_times_each_configuration(load_script, capsys):
    bench = load_script("bench_cpu_step", SCRIPT)
    if not bench.ZHENG.exists():
        pytest.skip(f"{bench.ZHENG} not found (the shared data sits beside the checkout)")
    rows = bench.main(["--cells", "4", "--threads", "1", "--warmup", "0", "--repeats", "1"])
    assert [r["configuration"] for r in rows] == list(bench.configurations())
    assert all(r["wall"] > 0 and r["cpu"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "expressed genes a cell" in out
    assert "wall vs old default" in out
    assert "goal < 1 s on 2 cores" in out
