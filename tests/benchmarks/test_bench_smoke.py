"""Smoke test of the asymmetric-vs-dense benchmark (``--quick``, well under a minute)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from xtrimogene_sc.module import XTrimoGeneConfig

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_asymmetric_vs_dense.py"


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory, run_quick
) -> tuple[str, list[dict[str, str]]]:
    csv_path = tmp_path_factory.mktemp("bench") / "quick.csv"
    stdout = run_quick(SCRIPT, "--csv", str(csv_path))
    with open(csv_path, newline="") as handle:
        return stdout, list(csv.DictReader(handle))


def test_quick_run_prints_a_ratio_table(quick_run: tuple[str, list[dict[str, str]]]) -> None:
    stdout, rows = quick_run
    table = [line for line in stdout.splitlines() if line.startswith("|")]
    header = table[0]
    for column in (
        "model",
        "train s",
        "embed s",
        "dense/asym train time",
        "dense/asym embed FLOPs",
    ):
        assert column in header
    assert {row["model"] for row in rows} == {"asym-full", "asym-masked", "dense"}
    # every quick configuration is measured (not skipped, no OOM), with finite positive timings
    for row in rows:
        assert row["note"] == ""
        for column in ("train s", "embed s", "train cells/s", "embed cells/s"):
            assert math.isfinite(float(row[column]))
            assert float(row[column]) > 0
        ratio = float(row["dense/asym train time"])
        assert math.isfinite(ratio)
        assert ratio > 0
        if row["model"] == "dense":
            assert ratio == pytest.approx(1.0)
    # the main table: header, separator, one line per configuration; then the breakdown table
    breakdown = table.index(next(line for line in table if "decoder share of fwd time" in line))
    assert breakdown == len(rows) + 2


def test_dense_baseline_does_at_least_the_work_of_the_asymmetric_model(
    quick_run: tuple[str, list[dict[str, str]]],
) -> None:
    _, rows = quick_run
    by_key = {(row["genes"], row["model"]): row for row in rows if row["density"] == "0.1"}
    for genes in {key[0] for key in by_key}:
        dense = by_key[(genes, "dense")]
        for model in ("asym-full", "asym-masked"):
            # the embedding pass: the dense stack sees every position, the encoder only non-zeros
            assert float(dense["GFLOP/cell embed"]) > float(
                by_key[(genes, model)]["GFLOP/cell embed"]
            )
        assert float(dense["GFLOP/cell train fwd"]) > float(
            by_key[(genes, "asym-masked")]["GFLOP/cell train fwd"]
        )


def test_analytic_flops_at_full_vocabulary_and_ten_percent_density(load_script) -> None:
    bench = load_script("_bench_asymmetric_vs_dense", SCRIPT)
    config = XTrimoGeneConfig.preset("small")
    genes = 19264
    nnz = 0.1 * genes
    dense = bench.analytic_flops("dense", config, genes, nnz, 8)
    for model in ("asym-full", "asym-masked"):
        asym = bench.analytic_flops(model, config, genes, nnz, 8)
        assert dense["train"] > 10 * asym["train"]
        assert dense["embed"] > 10 * asym["embed"]
        assert asym["train"] == pytest.approx(asym["train_encoder"] + asym["train_decoder"])
    full = bench.analytic_flops("asym-full", config, genes, nnz, 8)
    masked = bench.analytic_flops("asym-masked", config, genes, nnz, 8)
    assert masked["train_decoder"] < full["train_decoder"]
    assert masked["train_encoder"] == pytest.approx(full["train_encoder"])
    # one exact block with ff_mult 4: 24 n D^2 + 4 n^2 D
    n, dim = 100, 32
    assert bench._exact_layer(n, dim, 4) == 24 * n * dim**2 + 4 * n**2 * dim


def test_dense_baseline_interface(load_script) -> None:
    bench = load_script("_bench_asymmetric_vs_dense", SCRIPT)
    config = XTrimoGeneConfig.preset("tiny", encoder_dropout=0.0)
    n_genes = 300
    positions = np.random.default_rng(0).permutation(19264)[:n_genes]
    cells = bench.synthetic_cells(3, n_genes, 0.2, seed=1)
    cells.pos = torch.from_numpy(positions)[cells.pos]  # same cells on scattered positions
    order = torch.argsort(cells.row_ids() * 19264 + cells.pos)
    cells.pos, cells.value = cells.pos[order], cells.value[order]
    model = bench.DenseTransformerBaseline(config, n_genes, gene_positions=positions)
    assert len(model.blocks) == config.encoder_depth + config.decoder_depth
    out = model(cells, generator=torch.Generator().manual_seed(0))
    assert out.loss.requires_grad
    assert out.n_masked == out.target.numel() > 0
    assert set(out.positions.tolist()) <= set(positions.tolist())
    dense = model.densify(cells)
    local = model.local_index[out.positions]
    assert torch.equal(dense[out.rows, local], out.target)
    out.loss.backward()
    assert model.value_embedding.mask_embedding.grad is not None
    model.eval()
    assert model.embed(cells).shape == (3, config.encoder_dim)
    counts = model.parameter_counts()
    assert counts["total"] - counts["without_position_table"] == (n_genes + 2) * config.encoder_dim
