"""Tests of the efficiency benchmark: a ``--quick`` run and the FLOP counting it relies on."""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from xtrimogene_sc.nn import EncoderBlock

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_efficiency.py"


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("_bench_efficiency", SCRIPT)


@pytest.fixture(scope="module")
def quick_stdout(run_quick) -> str:
    return run_quick(SCRIPT)


def _rows(stdout: str, title: str) -> list[dict[str, str]]:
    """The markdown table printed after the line starting with ``title``, as dicts."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 2
    stop = next(i for i in range(start, len(lines) + 1) if i == len(lines) or not lines[i])
    table = lines[start:stop]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        for line in table[2:]
    ]


def test_quick_run_prints_every_table_and_the_goal_lines(quick_stdout: str) -> None:
    flops = _rows(quick_stdout, "## FLOPs")
    assert {row["model"] for row in flops} == {"asym-full", "asym-masked", "dense"}
    total = {row["model"]: float(row["profiled fwd+bwd GFLOP"]) for row in flops}
    assert total["dense"] > total["asym-full"] > total["asym-masked"] > 0
    for row in flops:  # the profiler and the analytic formula describe the same computation
        assert 0.9 < float(row["profiled/analytic fwd"]) < 1.1, row
    train = _rows(quick_stdout, "## Training step")
    assert {row["model"] for row in train} == {"asym-full", "asym-full+ckpt", "asym-masked",
                                               "dense"}  # fmt: skip
    assert all(row["status"] == "ok" and float(row["s/step"]) > 0 for row in train)
    for row in train:  # MFU = counted FLOPs / measured time / measured matmul rate
        mfu = float(row["MFU vs measured matmul"].rstrip("%")) / 100
        assert 0 <= mfu < 1.5, row
        assert float(row["GFLOP/step"]) > 0
    steps = {row["model"]: float(row["GFLOP/step"]) for row in train}
    assert steps["asym-full+ckpt"] > steps["asym-full"]  # checkpointing recomputes the forward
    embed = _rows(quick_stdout, "## Embedding throughput")
    assert all(float(row["cells/s"]) > 0 for row in embed)
    api = _rows(quick_stdout, "## Through the user API")
    assert {row["decoder_mode"] for row in api} == {"full", "masked"}
    assert all(row["status"] == "ok" and float(row["train cells/s"]) > 0 for row in api)
    for line in (
        "FLOPs ratio at 10% density (tiny, asym-full):",
        "training-step speed-up (tiny, asym-masked, cpu):",
        "MFU of the full-decoder step:",
        "peak memory a cell, full decoder with checkpointing:",
        "model.train (masked):",
    ):
        assert line in quick_stdout


def test_flop_counter_matches_the_analytic_encoder_block(bench) -> None:
    analytic = importlib.import_module("benchmarks.bench_asymmetric_vs_dense")
    dim, heads, length, batch = 64, 4, 300, 2
    block = EncoderBlock(dim, heads, ff_mult=4, dropout=0.0).eval()
    x = torch.randn(batch, length, dim)
    mapping = bench.CPU_SDPA_FLOPS
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter, torch.no_grad():
        block(x)
    expected = batch * analytic._exact_layer(length, dim, 4)
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.1)


def test_shape_only_count_equals_the_real_count(bench) -> None:
    block = EncoderBlock(32, 4, ff_mult=2, dropout=0.0)
    x = torch.randn(3, 50, 32)
    valid = torch.arange(50)[None, :] < torch.tensor([[50], [20], [35]])

    def count(shape_only: bool, backward: bool) -> int:
        with contextlib.ExitStack() as stack:
            if shape_only:
                stack.enter_context(bench.ShapeOnlyMode())
            counter = stack.enter_context(
                FlopCounterMode(display=False, custom_mapping=bench.CPU_SDPA_FLOPS)
            )
            out = block(x, valid).sum()
            if backward:
                out.backward()
        return counter.get_total_flops()

    assert count(shape_only=True, backward=False) == count(shape_only=False, backward=False) > 0
    # placeholders are not contiguous, so SDPA takes its math path: its backward has 4 matmuls
    # where the flash kernel's recomputes the scores (5); the totals differ by that only
    real, shape_only = count(False, backward=True), count(True, backward=True)
    assert shape_only == pytest.approx(real, rel=0.1)
