"""Asymmetric xTrimoGene vs a classical dense transformer: time, memory and analytic FLOPs.

For every gene count and density the script builds a minibatch of synthetic sparse cells
(negative-binomial counts, exactly ``round(density * genes)`` non-zero genes per cell, genes mapped
to vocabulary positions ``0 .. genes - 1``) and measures, for three models,

* ``asym-full``   -- :class:`XTrimoGeneModule` with ``decoder_mode='full'`` (the reference: the
  decoder always runs over the whole 19,266-position vocabulary, whatever ``genes`` is),
* ``asym-masked`` -- the same with ``decoder_mode='masked'`` (decoder over encoder tokens and masked
  positions only),
* ``dense``       -- :class:`benchmarks._baseline.DenseTransformerBaseline` over ``genes + 2``
  positions (``encoder_depth + decoder_depth`` exact-attention layers at the encoder width),

(a) one training step (masked-regression forward, backward and an AdamW step; median of
``--repeats`` after ``--warmup`` steps) and (b) one embedding pass (encoder only for the
asymmetric model, the whole stack for the dense one; ``inference_mode``). Every (genes, density,
model) runs in its own fresh worker process (``multiprocessing``, forkserver by default) so that the
peak-RSS increase read from ``resource.getrusage`` belongs to that configuration alone; the worker
also gets an address-space limit (``--mem-limit-gb``) so that an out-of-memory configuration is
reported instead of taking the machine down.

Analytic forward FLOPs (2 per multiply-add; projections, attention scores or FAVOR+ feature maps,
feed-forward, value embedding, decoder projection and head; expected token counts, no padding)
are printed next to the timings so that the measured speed-up can be compared with the FLOP ratio.
A dense configuration whose training step is predicted (from the dense measurements at smaller
gene counts, extrapolated in FLOPs) to take longer than ``--max-dense-step-s`` or to
exceed the memory cap is skipped and its time and memory are reported as estimates (``~``).

Only a table is printed; nothing is written except the optional ``--csv`` file.
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python benchmarks/bench_asymmetric_vs_dense.py`
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

from benchmarks._baseline import DenseTransformerBaseline  # noqa: E402
from xtrimogene_sc._constants import TOKENS  # noqa: E402
from xtrimogene_sc.data._tokenize import tokenize_counts  # noqa: E402
from xtrimogene_sc.module import SparseCells, XTrimoGeneConfig, XTrimoGeneModule  # noqa: E402
from xtrimogene_sc.nn import sample_masks  # noqa: E402
from xtrimogene_sc.nn._favor import default_nb_features  # noqa: E402

MODELS = ("asym-full", "asym-masked", "dense")
DEFAULT_GENES = (1000, 4000, 8000, TOKENS.N_GENES)
DEFAULT_DENSITIES = (0.05, 0.1, 0.2)
QUICK = {"preset": "tiny", "genes": (256, 512), "densities": (0.1,), "batch_size": 2}


# ---------------------------------------------------------------------------------------- data
def synthetic_cells(n_cells: int, n_genes: int, density: float, seed: int = 0) -> SparseCells:
    """Synthetic negative-binomial counts with exactly ``round(density * n_genes)`` non-zeros per cell.

    Genes have log-normal mean expression and are detected with probability proportional to it;
    detected genes get ``1 + NB(r=2, mean)`` counts, with a log-normal library size per cell.
    Columns map to vocabulary positions ``0 .. n_genes - 1``.
    """
    rng = np.random.default_rng(seed)
    nnz = min(n_genes, max(1, round(density * n_genes)))
    gene_mean = rng.lognormal(0.0, 1.0, size=n_genes)
    detect = gene_mean / gene_mean.sum()
    library = rng.lognormal(0.0, 0.3, size=n_cells)
    indptr = np.arange(n_cells + 1, dtype=np.int64) * nnz
    indices = np.empty(n_cells * nnz, dtype=np.int64)
    data = np.empty(n_cells * nnz, dtype=np.float32)
    for cell in range(n_cells):
        genes = np.sort(rng.choice(n_genes, size=nnz, replace=False, p=detect))
        mean = 2.0 * library[cell] * gene_mean[genes] / gene_mean[genes].mean()
        counts = 1 + rng.negative_binomial(2, 2.0 / (2.0 + mean))
        indices[cell * nnz : (cell + 1) * nnz] = genes
        data[cell * nnz : (cell + 1) * nnz] = counts
    counts_csr = sp.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))
    return tokenize_counts(counts_csr, np.arange(n_genes))


# ---------------------------------------------------------------------------------------- FLOPs
def _exact_layer(n: float, dim: int, ff_mult: int) -> float:
    """Forward FLOPs of one exact-attention block over ``n`` tokens (one cell)."""
    projections = 2 * n * dim * 3 * dim + 2 * n * dim * dim  # QKV + output
    scores = 2 * 2 * n * n * dim  # Q K^T and A V summed over heads
    ffn = 2 * 2 * n * dim * ff_mult * dim
    return projections + scores + ffn


def _favor_layer(n: float, dim: int, heads: int, nb_features: int, ff_mult: int) -> float:
    """Forward FLOPs of one FAVOR+ block over ``n`` tokens (one cell)."""
    projections = 2 * n * dim * 3 * dim + 2 * n * dim * dim
    feature_maps = 2 * (2 * n * nb_features * dim)  # phi(Q), phi(K)
    context = 2 * n * nb_features * dim  # phi(K)^T V
    readout = 2 * n * nb_features * dim + 2 * n * nb_features * heads  # phi(Q) C, normaliser
    ffn = 2 * 2 * n * dim * ff_mult * dim
    return projections + feature_maps + context + readout + ffn


def _value_embedding(n: float, dim: int, bins: int) -> float:
    return n * (2 * bins + 2 * bins * bins + 2 * bins * dim)


def analytic_flops(
    model: str, config: XTrimoGeneConfig, n_genes: int, nnz: float, batch_size: int
) -> dict[str, float]:
    """Expected forward FLOPs per cell of the training forward and of the embedding pass.

    Parameters
    ----------
    model
        ``"asym-full"``, ``"asym-masked"`` or ``"dense"``.
    config
        Model configuration (masking ratios, widths, depths).
    n_genes
        Gene positions of the data (the dense model's length; the asymmetric decoder always
        covers the whole vocabulary).
    nnz
        Non-zero genes per cell.
    batch_size
        Cells per minibatch (the asymmetric model projects the shared zero/position embedding of
        all positions once per batch).

    Returns
    -------
    dict
        ``train``, ``embed`` (totals) and ``train_encoder``/``train_decoder`` (the asymmetric
        split; for the dense model everything counts as encoder).
    """
    c = config
    depth_tokens = 2 if c.use_depth_tokens else 0
    p_nz, p_z = c.objective.mask_ratio_nonzero, c.objective.mask_ratio_zero
    if model == "dense":
        length = n_genes + depth_tokens
        masked = p_nz * nnz + p_z * (n_genes - nnz)
        layers = c.encoder_depth + c.decoder_depth
        body = _value_embedding(length, c.encoder_dim, c.bin_num) + layers * _exact_layer(
            length, c.encoder_dim, c.ff_mult
        )
        train = body + 2 * masked * c.encoder_dim
        return {"train": train, "embed": body, "train_encoder": train, "train_decoder": 0.0}

    def encoder(tokens: float) -> float:
        return _value_embedding(tokens, c.encoder_dim, c.bin_num) + c.encoder_depth * _exact_layer(
            tokens, c.encoder_dim, c.ff_mult
        )

    kept = (1 - p_nz) * nnz + depth_tokens
    masked = p_nz * nnz + p_z * (TOKENS.N_GENES - nnz)  # zeros are drawn over the vocabulary
    nb = c.decoder_nb_features or default_nb_features(c.decoder_dim // c.decoder_heads)
    project = 2 * c.encoder_dim * c.decoder_dim
    if model == "asym-full":
        length = TOKENS.SEQ_LEN if c.use_depth_tokens else TOKENS.N_GENES
        decoder = (
            project * (length / batch_size + kept + masked)
            + c.decoder_depth * _favor_layer(length, c.decoder_dim, c.decoder_heads, nb, c.ff_mult)
            + 2 * length * c.decoder_dim
        )
    elif model == "asym-masked":
        length = kept + masked
        decoder = (
            project * length
            + c.decoder_depth * _favor_layer(length, c.decoder_dim, c.decoder_heads, nb, c.ff_mult)
            + 2 * length * c.decoder_dim
        )
    else:
        msg = f"unknown model {model!r}"
        raise ValueError(msg)
    enc_train = encoder(kept)
    return {
        "train": enc_train + decoder,
        "embed": encoder(nnz + depth_tokens),
        "train_encoder": enc_train,
        "train_decoder": decoder,
    }


# ---------------------------------------------------------------------------------------- worker
@dataclass(frozen=True)
class Job:
    """One configuration, measured in one worker process."""

    model: str
    genes: int
    density: float
    preset: str
    batch_size: int
    repeats: int
    warmup: int
    threads: int
    dropout: float
    mem_limit_gb: float
    seed: int = 0


def build_config(preset: str, model: str, dropout: float) -> XTrimoGeneConfig:
    """The preset with the benchmark's dropout and, for asymmetric models, the decoder mode."""
    mode = "masked" if model == "asym-masked" else "full"
    return XTrimoGeneConfig.preset(preset, encoder_dropout=dropout, decoder_mode=mode)


def build_model(model: str, config: XTrimoGeneConfig, n_genes: int) -> torch.nn.Module:
    """The module measured for ``model``."""
    if model == "dense":
        return DenseTransformerBaseline(config, n_genes)
    return XTrimoGeneModule(config)


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """Total parameters and parameters without the gene/position embedding table."""
    total = sum(p.numel() for p in model.parameters())
    table = model.position_embedding if hasattr(model, "position_embedding") else None
    table = table if table is not None else model.gene_embedding
    return total, total - table.weight.numel()


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _limit_address_space(limit_gb: float) -> None:
    """Cap the worker's address space at its current size plus ``limit_gb``."""
    if limit_gb <= 0:
        return
    current = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                current = int(line.split()[1]) * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    new = current + int(limit_gb * 2**30)
    if hard != resource.RLIM_INFINITY:
        new = min(new, hard)
    resource.setrlimit(resource.RLIMIT_AS, (new, hard))


def _timed(fn: Any, warmup: int, repeats: int, cpu: list[float] | None = None) -> list[float]:
    """Wall seconds of ``repeats`` calls after ``warmup``; process CPU seconds go to ``cpu``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(time.process_time() - start_cpu)
    return times


def run_job(job: Job) -> dict[str, Any]:
    """Measure one configuration in the current process; returns seconds and RSS increases (MB)."""
    torch.set_num_threads(job.threads)
    torch.manual_seed(job.seed)
    config = build_config(job.preset, job.model, job.dropout)
    cells = synthetic_cells(job.batch_size, job.genes, job.density, seed=job.seed)
    model = build_model(job.model, config, job.genes)
    dense = job.model == "dense"
    generator = torch.Generator()
    rss_start = _max_rss_mb()

    # (b) embedding pass: encoder only (asymmetric) / whole stack (dense), no autograd
    model.eval()

    def embed() -> torch.Tensor:
        with torch.inference_mode():
            return model.embed(cells) if dense else model.embed_cells(cells, pooling="mean")

    embed_times = _timed(embed, job.warmup, job.repeats)
    rss_embed = _max_rss_mb()

    # (a) training step: forward + backward + AdamW; forward and the rest are also timed apart
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    split: list[tuple[float, float]] = []

    def train_step() -> None:
        generator.manual_seed(job.seed)  # the same masks every repeat
        optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss = model(cells, generator=generator).loss
        middle = time.perf_counter()
        loss.backward()
        optimizer.step()
        split.append((middle - start, time.perf_counter() - middle))

    train_cpu: list[float] = []
    train_times = _timed(train_step, job.warmup, job.repeats, train_cpu)
    rss_train = _max_rss_mb()
    timed_split = split[job.warmup :]

    # the asymmetric encoder alone, in training mode with autograd on, on the same kept tokens
    encoder_s = float("nan")
    if not dense:

        def encoder_forward() -> None:
            generator.manual_seed(job.seed)
            nonzero_masked, _ = sample_masks(
                cells.crow,
                TOKENS.N_GENES,
                p_nonzero=config.objective.mask_ratio_nonzero,
                p_zero=config.objective.mask_ratio_zero,
                positions=cells.pos,
                keep_at_least_one=not config.use_depth_tokens,
                generator=generator,
            )
            model.encode(cells, keep=~nonzero_masked)

        encoder_s = statistics.median(_timed(encoder_forward, 1, job.repeats))

    total, without_table = parameter_counts(model)
    return {
        "status": "ok",
        "train_s": statistics.median(train_times),
        "embed_s": statistics.median(embed_times),
        "train_mb": rss_train - rss_start,
        "cpu_per_wall": sum(train_cpu) / sum(train_times),
        "embed_mb": rss_embed - rss_start,
        "forward_s": statistics.median(f for f, _ in timed_split),
        "backward_step_s": statistics.median(b for _, b in timed_split),
        "encoder_forward_s": encoder_s,
        "params": total,
        "params_without_table": without_table,
        "nnz": cells.pos.numel() / cells.n_cells,
    }


def _worker(conn: Any, job: Job) -> None:
    try:
        _limit_address_space(job.mem_limit_gb)
        result = run_job(job)
    except (MemoryError, RuntimeError) as err:
        text = str(err)
        oom = isinstance(err, MemoryError) or "memory" in text.lower() or "alloc" in text.lower()
        result = {"status": f"OOM (>{job.mem_limit_gb:g} GB)" if oom else f"error: {text[:80]}"}
    conn.send(result)
    conn.close()


def run_in_subprocess(ctx: Any, job: Job, timeout_s: float) -> dict[str, Any]:
    """Run :func:`run_job` in a fresh worker process; report crashes and timeouts as a status."""
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_worker, args=(sender, job))
    process.start()
    sender.close()
    result: dict[str, Any] | None = None
    if receiver.poll(timeout_s):
        try:
            result = receiver.recv()
        except EOFError:
            result = None
    process.join(5)
    if process.is_alive():
        process.terminate()
        process.join()
        return {"status": f"timeout (>{timeout_s:g} s)"}
    if result is None:
        return {"status": f"crashed (exit code {process.exitcode})"}
    return result


# ---------------------------------------------------------------------------------------- driver
@dataclass
class Row:
    """One printed line: a (genes, density, model) measurement or estimate."""

    genes: int
    density: float
    model: str
    nnz: float
    flops: dict[str, float]
    result: dict[str, Any] = field(default_factory=dict)
    estimated: bool = False
    note: str = ""


def _estimate_from(
    history: list[Row], flops: dict[str, float], genes: int, dropout: float
) -> dict:
    """Extrapolate the measurements of one model (ascending gene counts) to a larger gene count.

    Time scales as ``FLOPs ** beta``; ``beta`` is fitted on the last two measurements (clamped to
    ``[1, 2]``; 1 with a single measurement), which captures the efficiency loss of long sequences.
    Memory scales linearly with the token count, quadratically when attention falls back to the
    math kernel (dropout > 0).
    """
    last = history[-1]
    beta = {"train": 1.0, "embed": 1.0}
    if len(history) >= 2:
        first = history[-2]
        for kind in beta:
            key = f"{kind}_s"
            flop_ratio = last.flops[kind] / first.flops[kind]
            if flop_ratio > 1 and first.result[key] > 0:
                fitted = math.log(last.result[key] / first.result[key]) / math.log(flop_ratio)
                beta[kind] = min(2.0, max(1.0, fitted))
    mem_scale = (genes / last.genes) ** (2 if dropout > 0 else 1)
    r = last.result
    return {
        "status": "estimated",
        "train_s": r["train_s"] * (flops["train"] / last.flops["train"]) ** beta["train"],
        "embed_s": r["embed_s"] * (flops["embed"] / last.flops["embed"]) ** beta["embed"],
        "train_mb": r["train_mb"] * mem_scale,
        "embed_mb": r["embed_mb"] * mem_scale,
        "forward_s": float("nan"),
        "backward_step_s": float("nan"),
        "encoder_forward_s": float("nan"),
    }


def _fmt(value: float | None, digits: int = 3, estimated: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.2f}"
    return f"~{text}" if estimated else text


def _ratio(dense: float | None, asym: float | None) -> float | None:
    if dense is None or asym is None or not asym or not math.isfinite(dense * asym):
        return None
    return dense / asym


COLUMNS = (
    "genes",
    "density",
    "nnz/cell",
    "model",
    "train s",
    "train cells/s",
    "train MB",
    "embed s",
    "embed cells/s",
    "embed MB",
    "GFLOP/cell train fwd",
    "GFLOP/cell embed",
    "dense/asym train time",
    "dense/asym train FLOPs",
    "dense/asym embed time",
    "dense/asym embed FLOPs",
    "CPU/wall",
    "note",
)


def table_rows(rows: list[Row], batch_size: int) -> list[dict[str, Any]]:
    """Flatten measurements into printable/CSV records with dense/asymmetric ratios."""
    dense_of = {(r.genes, r.density): r for r in rows if r.model == "dense"}
    records = []
    for row in rows:
        res = row.result
        has_time = "train_s" in res
        dense = dense_of.get((row.genes, row.density))
        dense_res = dense.result if dense is not None and "train_s" in dense.result else {}
        est = row.estimated or (dense is not None and dense.estimated and row.model != "dense")
        records.append(
            {
                "genes": row.genes,
                "density": row.density,
                "nnz/cell": row.nnz,
                "model": row.model,
                "train s": res.get("train_s"),
                "train cells/s": batch_size / res["train_s"] if has_time else None,
                "train MB": res.get("train_mb"),
                "embed s": res.get("embed_s"),
                "embed cells/s": batch_size / res["embed_s"] if has_time else None,
                "embed MB": res.get("embed_mb"),
                "GFLOP/cell train fwd": row.flops["train"] / 1e9,
                "GFLOP/cell embed": row.flops["embed"] / 1e9,
                "dense/asym train time": _ratio(dense_res.get("train_s"), res.get("train_s")),
                "dense/asym train FLOPs": _ratio(
                    dense.flops["train"] if dense else None, row.flops["train"]
                ),
                "dense/asym embed time": _ratio(dense_res.get("embed_s"), res.get("embed_s")),
                "dense/asym embed FLOPs": _ratio(
                    dense.flops["embed"] if dense else None, row.flops["embed"]
                ),
                "CPU/wall": res.get("cpu_per_wall"),
                "note": row.note,
                "_estimated": row.estimated,
                "_ratio_estimated": est,
                "forward_s": res.get("forward_s"),
                "backward_step_s": res.get("backward_step_s"),
                "encoder_forward_s": res.get("encoder_forward_s"),
                "decoder_flop_share": row.flops["train_decoder"] / row.flops["train"],
            }
        )
    return records


def format_table(records: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`table_rows` output (``~`` marks estimates)."""
    cells = []
    for rec in records:
        line = []
        for col in COLUMNS:
            value = rec[col]
            if col in ("genes", "model", "note"):
                line.append(str(value))
            elif col == "density":
                line.append(f"{value:g}")
            elif col == "nnz/cell":
                line.append(f"{value:.0f}")
            elif col.startswith("dense/asym") and "FLOPs" not in col:
                line.append(_fmt(value, estimated=rec["_ratio_estimated"]))
            elif col.startswith(("dense/asym", "GFLOP")) or col == "CPU/wall":
                line.append(_fmt(value))
            else:
                line.append(_fmt(value, estimated=rec["_estimated"]))
        cells.append(line)
    widths = [max(len(col), *(len(line[i]) for line in cells)) for i, col in enumerate(COLUMNS)]
    out = ["| " + " | ".join(col.ljust(w) for col, w in zip(COLUMNS, widths, strict=True)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in cells:
        out.append("| " + " | ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) + " |")
    return "\n".join(out)


def format_breakdown(records: list[dict[str, Any]]) -> str:
    """Where a training step goes: forward vs backward+AdamW, and the asymmetric encoder share."""
    out = [
        "| genes | density | model | train fwd s | bwd+AdamW s | encoder fwd s "
        "| decoder+rest fwd s | decoder share of fwd time | decoder share of fwd FLOPs |",
        "|" + "|".join("---" for _ in range(9)) + "|",
    ]
    for rec in records:
        fwd, enc = rec["forward_s"], rec["encoder_forward_s"]
        if fwd is None or not math.isfinite(fwd) or rec["note"].startswith("copy"):
            continue
        split = ["-", "-", "-", "-"]
        if rec["model"] != "dense":
            split = [
                _fmt(enc),
                _fmt(fwd - enc),
                f"{(fwd - enc) / fwd:.0%}",
                f"{rec['decoder_flop_share']:.0%}",
            ]
        out.append(
            f"| {rec['genes']} | {rec['density']:g} | {rec['model']} | {_fmt(fwd)} "
            f"| {_fmt(rec['backward_step_s'])} | " + " | ".join(split) + " |"
        )
    return "\n".join(out)


def _nearest(value: float, choices: tuple[float, ...]) -> float:
    return min(choices, key=lambda c: abs(c - value))


def _load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "unavailable"


def _parse_list(text: str, kind: type) -> tuple:
    return tuple(kind(item) for item in text.split(",") if item.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--preset", default="small", help="XTrimoGeneConfig preset (default small)"
    )
    parser.add_argument(
        "--genes",
        default=",".join(map(str, DEFAULT_GENES)),
        help="comma-separated gene counts (positions), each <= 19264",
    )
    parser.add_argument(
        "--densities",
        default=",".join(map(str, DEFAULT_DENSITIES)),
        help="comma-separated fractions of non-zero genes",
    )
    parser.add_argument("--models", default=",".join(MODELS), help="subset of " + ",".join(MODELS))
    parser.add_argument(
        "--dense-densities",
        default=None,
        help="densities at which the dense baseline is measured ('all', or a comma list; default "
        "the density closest to 0.1). Its work does not depend on density (every position is a "
        "token), so at the other densities its row repeats the measurement at the nearest one",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="encoder_dropout of all models (default 0: CPU SDPA then uses its fused kernel; "
        "any dropout > 0 falls back to the O(L^2)-memory math kernel)",
    )
    parser.add_argument(
        "--max-dense-step-s",
        type=float,
        default=30.0,
        help="skip (and estimate) a dense configuration whose predicted training step exceeds "
        "this; the asymmetric models are always measured",
    )
    parser.add_argument("--mem-limit-gb", type=float, default=12.0, help="per-worker memory cap")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per-worker time limit")
    parser.add_argument(
        "--start-method",
        default="forkserver",
        choices=("forkserver", "spawn"),
        help="multiprocessing start method of the fresh worker processes",
    )
    parser.add_argument("--csv", type=Path, default=None, help="also write the rows to this CSV")
    parser.add_argument(
        "--quick", action="store_true", help="tiny preset, 256/512 genes, 10%%, batch 2, 1 repeat"
    )
    args = parser.parse_args(argv)
    args.genes = _parse_list(args.genes, int)
    args.densities = _parse_list(args.densities, float)
    args.models = _parse_list(args.models, str)
    if args.quick:
        args.preset, args.genes = QUICK["preset"], QUICK["genes"]
        args.densities, args.batch_size = QUICK["densities"], QUICK["batch_size"]
        args.repeats, args.warmup = 1, 1
    unknown = set(args.models) - set(MODELS)
    if unknown or any(not 1 <= g <= TOKENS.N_GENES for g in args.genes):
        parser.error(f"models must be in {MODELS}; genes in [1, {TOKENS.N_GENES}]")
    if any(not 0 < d <= 1 for d in args.densities) or args.repeats < 1:
        parser.error("densities must lie in (0, 1] and repeats be >= 1")
    if args.dense_densities == "all":
        args.dense_densities = args.densities
    elif args.dense_densities is None:
        args.dense_densities = (min(args.densities, key=lambda d: abs(d - 0.1)),)
    else:
        args.dense_densities = _parse_list(args.dense_densities, float)
        if not set(args.dense_densities) <= set(args.densities):
            parser.error("--dense-densities must be a subset of --densities")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark, print the tables, optionally write ``--csv``; returns the records."""
    args = parse_args(argv)
    ctx = mp.get_context(args.start_method)
    if args.start_method == "forkserver":  # import torch and the package once, in the server
        ctx.set_forkserver_preload(["benchmarks._baseline", "xtrimogene_sc.data._tokenize"])
    base = build_config(args.preset, "asym-full", args.dropout)
    print(
        f"# asymmetric vs dense | preset={args.preset} batch={args.batch_size} "
        f"repeats={args.repeats} (median, after {args.warmup} warm-up) threads={args.threads} "
        f"dropout={args.dropout:g} torch={torch.__version__}"
    )
    print(
        f"# config: encoder {base.encoder_depth}x{base.encoder_dim} ({base.encoder_heads} heads), "
        f"decoder {base.decoder_depth}x{base.decoder_dim} ({base.decoder_heads} heads, FAVOR+ "
        f"m={base.decoder_nb_features or default_nb_features(base.decoder_dim // base.decoder_heads)}), "
        f"dense baseline {base.encoder_depth + base.decoder_depth}x{base.encoder_dim} "
        f"({base.encoder_heads} heads)"
    )
    asym_total, asym_body = parameter_counts(XTrimoGeneModule(base))
    print(
        f"# parameters: asymmetric {asym_total:,} ({asym_body:,} without the 19,267-row gene table)"
    )
    for genes in args.genes:
        dense_total, dense_body = parameter_counts(DenseTransformerBaseline(base, genes))
        print(
            f"#             dense @ {genes} genes {dense_total:,} "
            f"({dense_body:,} without its {genes + 2}-row position table)"
        )
    print(f"# load average at start: {_load_average()}")
    sys.stdout.flush()
    rows: list[Row] = []
    history: dict[tuple[str, float], list[Row]] = {}
    for genes in sorted(args.genes):
        for density in args.densities:
            nnz = float(min(genes, max(1, round(density * genes))))
            for model in args.models:
                flops = analytic_flops(
                    model, build_config(args.preset, model, args.dropout), genes, nnz,
                    args.batch_size,
                )  # fmt: skip
                row = Row(genes, density, model, nnz, flops)
                if model == "dense" and density not in args.dense_densities:
                    row.note = "copy of dense @ " + f"{_nearest(density, args.dense_densities):g}"
                    rows.append(row)
                    continue
                measured = history.setdefault((model, density), [])
                estimate = None
                if model == "dense" and measured:  # the asymmetric models are always measured
                    estimate = _estimate_from(measured, flops, genes, args.dropout)
                if estimate is not None and estimate["train_s"] > args.max_dense_step_s:
                    row.result, row.estimated = estimate, True
                    row.note = f"skipped: predicted step > {args.max_dense_step_s:g} s"
                elif estimate is not None and estimate["train_mb"] > args.mem_limit_gb * 1024:
                    row.result, row.estimated = estimate, True
                    row.note = f"skipped: predicted OOM (> {args.mem_limit_gb:g} GB)"
                else:
                    job = Job(
                        model, genes, density, args.preset, args.batch_size, args.repeats,
                        args.warmup, args.threads, args.dropout, args.mem_limit_gb,
                    )  # fmt: skip
                    start = time.perf_counter()
                    row.result = run_in_subprocess(ctx, job, args.timeout_s)
                    if row.result["status"] == "ok":
                        measured.append(row)
                    else:
                        row.note = row.result["status"]
                    print(
                        f"# measured {model} genes={genes} density={density:g}: "
                        f"{row.result['status']} ({time.perf_counter() - start:.1f} s wall)",
                        file=sys.stderr,
                    )
                rows.append(row)

    for row in rows:  # the dense rows at densities where it was not measured
        if row.model == "dense" and row.density not in args.dense_densities:
            source = next(
                r
                for r in rows
                if r.model == "dense"
                and r.genes == row.genes
                and r.density == _nearest(row.density, args.dense_densities)
            )
            row.result, row.estimated = source.result, source.estimated
    records = table_rows(rows, args.batch_size)
    print(f"# load average at end: {_load_average()}")
    print()
    print(format_table(records))
    print()
    print(
        "train/embed s: median seconds per minibatch; cells/s = batch / s; MB: peak-RSS increase "
        "of the fresh worker over its state after building model and data (embed measured first); "
        "GFLOP: analytic forward FLOPs per cell; CPU/wall: process CPU seconds per wall second in "
        "the timed training steps (about the thread count when the machine is otherwise idle, "
        "lower when other processes compete for the cores); ~: estimated (skipped), not measured; "
        "'copy of dense @ d': the dense baseline's work does not depend on density, so it is "
        "measured at d only and repeated here."
    )
    usable = min(args.threads, os.cpu_count() or 1)
    measured = [r for r in records if r["CPU/wall"] is not None and not r["note"]]
    contended = [r for r in measured if r["CPU/wall"] < 0.75 * usable]
    if contended:
        print(
            f"WARNING: {len(contended)} of {len(measured)} measured rows ran with CPU/wall below "
            f"0.75 x {usable}: other processes shared the cores, so their times are inflated "
            "(with more threads than free cores, OpenMP barriers can make that 10x or more)."
        )
    print()
    print(format_breakdown(records))
    if args.csv is not None:
        keys = [
            *COLUMNS,
            *("forward_s", "backward_step_s", "encoder_forward_s", "decoder_flop_share"),
            "_estimated",
        ]
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(records)
    return records


if __name__ == "__main__":
    main()
