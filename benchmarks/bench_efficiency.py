"""Efficiency of the asymmetric xTrimoGene vs a classical transformer at 19,264 genes (issue 3).

Three sections, one table each, then one summary line per goal:

1. **FLOPs** of one training step (forward, and forward + backward) per cell, for
   ``asym-full`` (:class:`XTrimoGeneModule`, ``decoder_mode='full'``, the reference),
   ``asym-masked`` (``decoder_mode='masked'``) and ``dense``
   (:class:`benchmarks._baseline.DenseTransformerBaseline` over all 19,264 + 2 positions, same
   width and depth), counted by :class:`torch.utils.flop_counter.FlopCounterMode` and, next to it,
   by the analytic formula of ``bench_asymmetric_vs_dense.analytic_flops``.

   Pure meta tensors cannot run these models: masking, packing and the padding masks are
   data dependent (``nonzero``, ``bincount``, ``int(counts.max())``). The count therefore runs in
   :class:`ShapeOnlyMode`: integer/bool index computations run for real on CPU (they are cheap and
   fix every shape), while every operation that touches a parameter or an activation is evaluated
   on the *meta* device and replaced by a zero-stride placeholder of the right shape -- no float
   compute and no activation memory, so even the 100M model's dense step (~76 TFLOP) is counted
   in seconds. The counter sees the operators that a real step dispatches, with one difference:
   the placeholders are not contiguous, so SDPA takes its math path (two batched matmuls forward,
   four backward) instead of the CPU flash kernel, whose backward also recomputes the scores (a
   fifth). Forward counts are identical; attention backward is counted without the recompute.

2. **Training step** (forward + backward + AdamW) wall-clock and peak memory at 19,264 genes,
   median of ``--repeats`` after a warm-up; each (model, density) runs in a fresh ``python``
   process (``subprocess``, i.e. fork + exec) that reads its own peak RSS (``VmHWM``).
3. **Embedding throughput**: encoder-only ``embed_cells`` vs the dense baseline's ``embed``
   (``inference_mode``), measured in the same workers before training.

``--device cuda`` runs sections 2 and 3 on the GPU with bf16 autocast (SDPA then takes its flash
path); peak memory is then ``torch.cuda.max_memory_allocated``. Dropout is 0 for every model
(``--dropout``): with dropout > 0 CPU SDPA falls back to the math kernel, whose O(L^2) attention
matrix does not fit for the dense baseline at 19,266 positions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # allow `python benchmarks/bench_efficiency.py`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten, tree_map  # noqa: E402
from torch.utils.flop_counter import (  # noqa: E402
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from benchmarks._throughput import (  # noqa: E402
    api_worker,
    matmul_peak_tflops,
    nominal_peak_tflops,
)
from benchmarks.bench_asymmetric_vs_dense import (  # noqa: E402
    analytic_flops,
    build_config,
    build_model,
    synthetic_cells,
)
from xtrimogene_sc._constants import TOKENS  # noqa: E402

MODELS = ("asym-full", "asym-masked", "dense")
TIMED = ("asym-full", "asym-full+ckpt", "asym-masked", "dense")  # +ckpt: gradient checkpointing
GENES = TOKENS.N_GENES
QUICK = {"presets": ("tiny",), "genes": 2048, "densities": (0.1,), "batch_size": 2}
ATEN = torch.ops.aten


# ------------------------------------------------------------------------------ shape-only FLOPs
def _is_placeholder(t: torch.Tensor) -> bool:
    if getattr(t, "_xtg_placeholder", False):
        return True
    storage = t.untyped_storage().nbytes() if t.device.type == "cpu" else 1 << 30
    return t.numel() >= 2 and storage <= t.element_size()


def _placeholder(t: Any) -> Any:
    if isinstance(t, torch.Tensor) and t.device.type == "meta":
        out = torch.zeros((), dtype=t.dtype).expand(t.shape)
        out._xtg_placeholder = True
        return out
    return t


def _meta(t: Any) -> Any:
    return t.to("meta") if isinstance(t, torch.Tensor) else t


class ShapeOnlyMode(TorchDispatchMode):
    """Evaluate parameter/activation ops on ``meta``; run index computations for real.

    An op is faked when one of its inputs is a placeholder or a leaf tensor that requires grad (a
    parameter); its output shape comes from the meta kernel and it returns zero-stride zeros.
    In-place ops on placeholders are dropped. A ``cat`` of placeholders with real tensors is
    materialised so that flags carried next to features (the masked decoder packs them together)
    keep their values. Boolean indices are turned into integer indices on CPU before the meta call.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        fake = any(_is_placeholder(t) for t in tensors)
        if not (fake or any(t.requires_grad and t.is_leaf for t in tensors)):
            return func(*args, **kwargs)
        if fake and func is ATEN.cat.default and not all(_is_placeholder(t) for t in tensors):
            parts = [t.contiguous() if _is_placeholder(t) else t for t in args[0]]
            return func(parts, *args[1:], **kwargs)
        if func._schema.is_mutable:
            return args[0] if _is_placeholder(args[0]) else func(*args, **kwargs)
        if func is ATEN._local_scalar_dense.default:
            return 0
        if func in (ATEN.index.Tensor, ATEN._unsafe_index.Tensor):
            indices = []
            for index in args[1]:
                is_mask = index is not None and index.dtype == torch.bool
                indices.extend(index.nonzero(as_tuple=True) if is_mask else (index,))
            args = (args[0], indices)
        meta_args, meta_kwargs = tree_map(_meta, (args, kwargs))
        return tree_map(_placeholder, func(*meta_args, **meta_kwargs))


def _cpu_flash(q_shape, k_shape, v_shape, *_: Any, **__: Any) -> int:
    return sdpa_flop_count(q_shape, k_shape, v_shape)


def _cpu_flash_backward(g_shape, q_shape, k_shape, v_shape, *_: Any, **__: Any) -> int:
    return sdpa_backward_flop_count(g_shape, q_shape, k_shape, v_shape)


# FlopCounterMode knows the CUDA SDPA kernels but not the CPU flash kernel
CPU_SDPA_FLOPS = {
    ATEN._scaled_dot_product_flash_attention_for_cpu: _cpu_flash,
    ATEN._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward,
}


def profiled_flops(model: torch.nn.Module, cells: Any) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs of one training step, counted shape-only."""
    with ShapeOnlyMode(), FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS) as counter:
        loss = model(cells, generator=torch.Generator().manual_seed(0)).loss
        forward = counter.get_total_flops()
        loss.backward()
    return forward, counter.get_total_flops()


def flops_rows(presets: tuple[str, ...], densities: tuple[float, ...], genes: int, batch: int):
    """One record per (preset, density, model): profiled and analytic GFLOP per cell."""
    records = []
    for preset in presets:
        for density in densities:
            cells = synthetic_cells(batch, genes, density)
            nnz = cells.pos.numel() / batch
            per_model = {}
            for name in MODELS:
                config = build_config(preset, name, 0.0)
                torch.manual_seed(0)
                fwd, total = profiled_flops(build_model(name, config, genes), cells)
                analytic = analytic_flops(name, config, genes, nnz, batch)["train"]
                per_model[name] = (fwd / batch, total / batch, analytic)
            for name, (fwd, total, analytic) in per_model.items():
                records.append(
                    {
                        "preset": preset, "density": density, "model": name,
                        "fwd": fwd / 1e9, "total": total / 1e9, "analytic": analytic / 1e9,
                        "ratio": per_model["dense"][1] / total,
                    }
                )  # fmt: skip
    return records


# ------------------------------------------------------------------------------ timing worker
def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Embedding pass, then training steps, of one (model, density) in this fresh process."""
    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    device = torch.device(job["device"])
    cuda = device.type == "cuda"
    name = job["model"].removesuffix("+ckpt")
    config = build_config(job["preset"], name, job["dropout"])
    config = replace(config, gradient_checkpointing=job["model"].endswith("+ckpt"))
    cpu_cells = synthetic_cells(job["batch"], job["genes"], job["density"])
    _, step_flops = profiled_flops(build_model(name, config, job["genes"]), cpu_cells)
    cells = cpu_cells.to(device)
    torch.manual_seed(0)
    model = build_model(name, config, job["genes"]).to(device)
    dense = name == "dense"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)

    def timed(fn: Any, repeats: int) -> float:
        for _ in range(job["warmup"]):
            fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def peak_mb() -> float:
        return torch.cuda.max_memory_allocated() / 2**20 if cuda else _vm_hwm_mb()

    def embed() -> None:
        with torch.inference_mode(), autocast:
            model.embed(cells) if dense else model.embed_cells(cells, pooling="mean")

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    setup_mb = peak_mb()  # interpreter, libraries, model and data
    model.eval()  # the asymmetric encoder pass is cheap: more repeats for a stable median
    embed_s = timed(embed, job["repeats"] if dense else max(5, job["repeats"]))
    embed_mb = peak_mb()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator(device=device)

    def train_step() -> None:
        generator.manual_seed(0)
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = model(cells, generator=generator).loss
        loss.backward()
        optimizer.step()

    train_s = timed(train_step, job["repeats"])
    return {
        "step_gflop": step_flops / 1e9,
        "matmul_tflops": matmul_peak_tflops(device),
        "train_s": train_s,
        "train_mb": peak_mb(),
        "embed_s": embed_s,
        "embed_mb": embed_mb,
        "setup_mb": 0.0 if cuda else setup_mb,
    }


def measure(job: dict[str, Any], timeout_s: float, flag: str = "--worker") -> dict[str, Any]:
    """Run a worker (``--worker`` or ``--api-worker``) in a fresh interpreter; failures come back
    as a status."""
    command = [sys.executable, str(Path(__file__).resolve()), flag, json.dumps(job)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout (>{timeout_s:g} s)"}
    if proc.returncode != 0:
        return {"status": "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1][:80]}
    return {"status": "ok", **json.loads(proc.stdout.strip().splitlines()[-1])}


# ------------------------------------------------------------------------------ tables and driver
def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    return "\n".join(lines)


def _ratio(num: float | None, den: float | None) -> str:
    return f"{num / den:.1f}x" if num and den else "-"


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1/5/15 min)"


def timing_records(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Measure every (model, density); the dense baseline once, at the density nearest 10%."""
    dense_density = min(args.densities, key=lambda d: abs(d - 0.1))
    records = []
    for density in args.densities:
        for name in TIMED:
            if name == "dense" and density != dense_density:
                continue
            job = {
                "model": name, "density": density, "preset": args.timing_preset,
                "genes": args.genes, "batch": args.batch_size, "repeats": args.repeats,
                "warmup": 0 if args.quick else 1, "threads": args.threads, "dropout": args.dropout,
                "device": args.device,
            }  # fmt: skip
            start = time.perf_counter()
            result = measure(job, args.timeout_s)
            print(f"# measured {name} @ {density:g}: {result['status']} "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
            records.append({**job, **result})
    return records


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--presets", default="small,100m", help="presets for the FLOP count")
    parser.add_argument("--timing-preset", default="small", help="preset timed (section 2, 3)")
    parser.add_argument("--densities", default="0.05,0.1,0.15")
    parser.add_argument("--batch-size", type=int, default=2, help="cells per timed step")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per-worker limit")
    parser.add_argument("--skip-timing", action="store_true", help="FLOP table only")
    parser.add_argument("--quick", action="store_true", help="tiny preset, 2,048 genes, < 60 s")
    parser.add_argument("--api-cells", type=int, default=64, help="cells for the API section")
    parser.add_argument("--api-batch-size", type=int, default=8, help="train() batch size")
    parser.add_argument("--skip-api", action="store_true", help="no model.train/embedding rows")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--api-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.presets = tuple(p for p in args.presets.split(",") if p)
    args.densities = tuple(float(d) for d in args.densities.split(",") if d)
    args.genes = GENES
    if args.quick:
        args.presets, args.timing_preset = QUICK["presets"], QUICK["presets"][0]
        args.genes, args.densities = QUICK["genes"], QUICK["densities"]
        args.batch_size, args.repeats = QUICK["batch_size"], 1
        args.api_cells, args.api_batch_size = 8, 4
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA build of torch and a visible GPU")
    if not args.densities or any(not 0 < d < 1 for d in args.densities):
        parser.error("--densities must be fractions in (0, 1)")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the three sections, print their tables and the goal lines; returns the records."""
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return {}
    if args.api_worker is not None:
        print(json.dumps(api_worker(json.loads(args.api_worker))))
        return {}
    torch.set_num_threads(args.threads)
    print(f"# efficiency benchmark | genes={args.genes} (+2 depth tokens) torch={torch.__version__}"
          f" device={args.device} threads={args.threads} dropout={args.dropout:g}")  # fmt: skip
    print(f"# load average at start: {_load()}")
    flops = flops_rows(args.presets, args.densities, args.genes, batch=2)
    print("\n## FLOPs per cell, one training step (FlopCounterMode, shape-only; 2 FLOP per MAC)\n")
    print(_table(
        ["preset", "density", "model", "profiled fwd GFLOP", "profiled fwd+bwd GFLOP",
         "analytic fwd GFLOP", "profiled/analytic fwd", "dense/model fwd+bwd"],
        [[r["preset"], f"{r['density']:g}", r["model"], f"{r['fwd']:.1f}", f"{r['total']:.1f}",
          f"{r['analytic']:.1f}", f"{r['fwd'] / r['analytic']:.3f}", f"{r['ratio']:.1f}x"]
         for r in flops],
    ))  # fmt: skip
    timing = [] if args.skip_timing else timing_records(args)
    dense = next((r for r in timing if r["model"] == "dense" and r["status"] == "ok"), None)
    nominal = nominal_peak_tflops(torch.device(args.device))
    if timing:
        mem = "peak GPU MB" if args.device == "cuda" else "peak RSS MB"
        print(f"\n## Training step (fwd+bwd+AdamW), preset={args.timing_preset}, "
              f"batch={args.batch_size}, median of {args.repeats} after 1 warm-up\n")  # fmt: skip
        rows = []
        for r in timing:
            ok = r["status"] == "ok"
            rows.append([r["model"], f"{r['density']:g}", r["status"],
                         f"{r['train_s']:.3f}" if ok else "-",
                         f"{args.batch_size / r['train_s']:.2f}" if ok else "-",
                         f"{r['train_mb']:.0f}" if ok else "-",
                         f"{(r['train_mb'] - r['setup_mb']) / args.batch_size:.0f}" if ok else "-",
                         _ratio(dense and dense["train_s"], r.get("train_s")),
                         f"{r['step_gflop']:.1f}" if ok else "-",
                         f"{_tflops(r):.3f}" if ok else "-",
                         f"{_mfu(r, r['matmul_tflops']):.0%}" if ok else "-",
                         f"{_mfu(r, nominal):.1%}" if ok and nominal else "-"])  # fmt: skip
        print(_table(["model", "density", "status", "s/step", "cells/s", mem, "MB/cell over setup",
                      "dense/model time", "GFLOP/step", "TFLOP/s", "MFU vs measured matmul",
                      "MFU vs datasheet"], rows))  # fmt: skip
        print(f"\n# measured matmul peak: {timing[0].get('matmul_tflops', float('nan')):.3f} "
              f"TFLOP/s ({'bf16' if args.device == 'cuda' else 'fp32'}); datasheet: "
              f"{nominal or '-'}")  # fmt: skip
        print(f"\n## Embedding throughput (encoder-only embed_cells vs dense embed), "
              f"batch={args.batch_size}\n")  # fmt: skip
        rows = [[r["model"], f"{r['density']:g}", f"{r['embed_s']:.3f}",
                 f"{args.batch_size / r['embed_s']:.2f}", f"{r['embed_mb']:.0f}",
                 _ratio(dense and dense["embed_s"], r["embed_s"])]
                for r in timing if r["status"] == "ok"]  # fmt: skip
        print(_table(["model", "density", "s/batch", "cells/s", mem, "speed-up vs dense"], rows))
        print(f"\n# dense baseline measured at density {dense['density'] if dense else '-'} only: "
              "its work does not depend on density (every position is a token)")  # fmt: skip
    api = [] if args.skip_api or args.skip_timing else api_records(args)
    if api:
        print(f"\n## Through the user API: XTrimoGene.train (2 epochs after a warm-up epoch, "
              f"batch {args.api_batch_size}) and get_latent_representation, {args.api_cells} "
              f"cells, preset={args.timing_preset}\n")  # fmt: skip
        print(_table(["decoder_mode", "density", "status", "train cells/s", "embed cells/s"],
                     [[r["mode"], f"{r['density']:g}", r["status"],
                       f"{r['train_cells_s']:.1f}" if r["status"] == "ok" else "-",
                       f"{r['embed_cells_s']:.1f}" if r["status"] == "ok" else "-"]
                      for r in api]))  # fmt: skip
    print(f"\n# load average at end: {_load()}\n")
    ref = min(args.densities, key=lambda d: abs(d - 0.1))
    for preset in args.presets:
        for name in ("asym-full", "asym-masked"):
            r = next(
                x for x in flops if (x["preset"], x["density"], x["model"]) == (preset, ref, name)
            )
            print(f"FLOPs ratio at {ref:.0%} density ({preset}, {name}): {r['ratio']:.1f} "
                  f"(goal >= 30: {'met' if r['ratio'] >= 30 else 'NOT met'})")  # fmt: skip
    for r in timing:
        if r["density"] == ref and r["model"] != "dense" and dense and r["status"] == "ok":
            speed = dense["train_s"] / r["train_s"]
            goal = 30 if r["model"] == "asym-masked" else 12
            print(f"training-step speed-up ({args.timing_preset}, {r['model']}, {args.device}): "
                  f"{speed:.1f} (goal >= {goal}: {'met' if speed >= goal else 'NOT met'})")  # fmt: skip
        if r["density"] == ref and r["model"] == "asym-full" and r["status"] == "ok":
            mfu = _mfu(r, nominal or r["matmul_tflops"])
            print(f"MFU of the full-decoder step: {mfu:.0%} vs "
                  f"{'datasheet' if nominal else 'measured matmul'} (goal >= 35%)")  # fmt: skip
        if r["density"] == ref and r["model"] == "asym-full+ckpt" and r["status"] == "ok":
            per_cell = (r["train_mb"] - r["setup_mb"]) / args.batch_size / 1024
            print(f"peak memory a cell, full decoder with checkpointing: {per_cell:.2f} GB "
                  f"(goal <= 1.5 GB)")  # fmt: skip
    for r in api:
        if r["status"] == "ok" and r["density"] == ref:
            goals = {"full": (60, 1100), "masked": (200, 1100)}[r["mode"]]
            print(f"model.train ({r['mode']}): {r['train_cells_s']:.1f} cells/s (goal >= "
                  f"{goals[0]} on the GPU); get_latent_representation: "
                  f"{r['embed_cells_s']:.1f} cells/s (goal >= {goals[1]} on the GPU)")  # fmt: skip
    return {"flops": flops, "timing": timing, "api": api}


def _tflops(r: dict[str, Any]) -> float:
    return r["step_gflop"] / r["train_s"] / 1e3


def _mfu(r: dict[str, Any], peak_tflops: float | None) -> float:
    return _tflops(r) / peak_tflops if peak_tflops else float("nan")


def api_records(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``model.train`` and embedding throughput, full and masked decoder, at ~10% density."""
    density = min(args.densities, key=lambda d: abs(d - 0.1))
    records = []
    for mode in ("full", "masked"):
        job = {
            "mode": mode, "density": density, "preset": args.timing_preset, "genes": args.genes,
            "cells": args.api_cells, "batch": args.api_batch_size, "threads": args.threads,
            "dropout": args.dropout, "device": args.device,
        }  # fmt: skip
        result = measure(job, args.timeout_s, flag="--api-worker")
        print(f"# measured API {mode}: {result['status']}", file=sys.stderr, flush=True)
        records.append({**job, **result})
    return records


if __name__ == "__main__":
    main()
