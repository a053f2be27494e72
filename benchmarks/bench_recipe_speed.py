"""The recipe's training step: today's code against an earlier commit, CPU time and wall time.

Issue 33 asks for less CPU time per step of ``SMALL_DATA_RECIPE`` training, measured as a ratio
against the code before the change. The earlier code is a git revision (``--baseline``, by
default the commit the work started from), unpacked with ``git archive`` into a temporary
folder. Every measurement is a child process that imports the package from one of the two
folders, builds the recipe's model on the data set, and trains it through
``XTrimoGene.train`` (data loading, Lightning, validation and set-up included) for about
``--steps`` optimiser steps; it reports its own CPU time (and that of any compiler workers it
started) and the wall time, per step. Baseline and current runs alternate, ``--repeats`` times
for each data set and thread count, so a busy host slows both alike; the table gives medians and
the ratio of the medians.

Data sets: ``pbmc68k`` (the 700 bundled cells, every gene) and ``zheng`` (2,140 FACS-sorted
PBMCs under ``../shared/data/annotation``, the recipe's 2,000-gene panel). The header prints the
CPU model, the thread counts and the share of the host's CPU time stolen by other guests while
the runs went (Linux): on a shared VM, figures of two days compare only beside it.

    python benchmarks/bench_recipe_speed.py --threads 1 2 --datasets pbmc68k zheng
    python benchmarks/bench_recipe_speed.py --compile   # also train(compile=True)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZHENG = ROOT.parent / "shared" / "data" / "annotation" / "zheng2017_sorted_pbmc.h5ad"
BASELINE = "8df4714"  # main when issue 33 started: the code whose step this work shortens


def cpu_counters(stat: Path = Path("/proc/stat")) -> list[int] | None:
    """The host's cumulative CPU-time counters (Linux ``/proc/stat``), ``None`` where absent."""
    try:
        line = stat.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = line.split()
    if len(fields) < 9 or fields[0] != "cpu":  # kernels before 2.6.11 count no steal
        return None
    return [int(v) for v in fields[1:9]]


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """Share of the CPU time between two readings that the hypervisor gave to other guests.

    On a shared VM, *steal* is time this guest wanted to run but the host ran someone else;
    when it is high, every step is slower for reasons outside the code, so the figures of two
    days are only comparable beside it. ``None`` without ``/proc/stat`` readings.
    """
    if before is None or after is None:
        return None
    # the counters: user, nice, system, idle, iowait, irq, softirq, steal
    spent = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(spent)
    return spent[7] / total if total > 0 else None


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load(name: str, cells: int | None):
    """The AnnData of raw counts of data set ``name`` (its first ``cells`` cells if given)."""
    import anndata as ad

    import xtrimogene_sc as xtg

    if name == "pbmc68k":
        adata = xtg.datasets.pbmc68k_counts()
    elif name == "zheng":
        if not ZHENG.exists():
            sys.exit(f"{ZHENG} not found (the shared data folder sits beside the checkout)")
        adata = ad.read_h5ad(ZHENG)
    else:
        sys.exit(f"unknown data set {name!r}: use pbmc68k or zheng")
    return adata if cells is None else adata[:cells].copy()


def child(args: argparse.Namespace) -> dict[str, float]:
    """Train the recipe once in this process and return its per-step CPU and wall seconds."""
    import torch

    import xtrimogene_sc as xtg
    from xtrimogene_sc.model import SMALL_DATA_RECIPE

    torch.set_num_threads(args.threads)
    adata = load(args.data, args.cells)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(adata)
        torch.manual_seed(0)
        model = SMALL_DATA_RECIPE.build(adata)
    kwargs = SMALL_DATA_RECIPE.train_kwargs(adata.n_obs)
    per_epoch = SMALL_DATA_RECIPE.steps_per_epoch(adata.n_obs, kwargs["train_size"])
    kwargs["max_epochs"] = max(1, round(args.steps / per_epoch))
    if args.compile:
        kwargs["compile"] = True
    quiet = {"enable_progress_bar": False, "logger": False, "enable_checkpointing": False,
             "enable_model_summary": False}  # fmt: skip
    cpu, wall = _cpu_seconds(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.train(**kwargs, **quiet)
    steps = kwargs["max_epochs"] * per_epoch
    return {"cpu": (_cpu_seconds() - cpu) / steps, "wall": (time.perf_counter() - wall) / steps,
            "steps": steps}  # fmt: skip


def _cpu_seconds() -> float:
    """CPU seconds of this process and of the children it waited for (compiler workers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def baseline_tree(revision: str, into: Path) -> Path:
    """The package at git ``revision``, unpacked under ``into``; returns the folder to import from."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "xtrimogene_sc"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def measure(code: Path, data: str, threads: int, args: argparse.Namespace, compile_: bool):
    """Run one child that imports the package from ``code``; its per-step figures."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--data", data,
               "--threads", str(threads), "--steps", str(args.steps)]  # fmt: skip
    if args.cells is not None:
        command += ["--cells", str(args.cells)]
    if compile_:
        command.append("--compile")
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env, cwd=code)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--datasets", nargs="+", default=["pbmc68k", "zheng"])
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps a run, about")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the old code")
    parser.add_argument("--compile", action="store_true", help="also time train(compile=True)")
    parser.add_argument("--cells", type=int, default=None, help="only the first cells (tests)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", default="pbmc68k", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.threads = args.threads[0]
        print(json.dumps(child(args)))
        return []
    settings = {f"baseline ({args.baseline})": (None, False), "current": (ROOT, False)}
    if args.compile:
        settings["current, compile=True"] = (ROOT, True)
    rows = []
    counters = cpu_counters()
    with tempfile.TemporaryDirectory() as folder:
        old = baseline_tree(args.baseline, Path(folder))
        for data in args.datasets:
            for threads in args.threads:
                runs: dict[str, list[dict]] = {name: [] for name in settings}
                for _ in range(args.repeats):
                    for name, (code, compile_) in settings.items():
                        runs[name].append(measure(code or old, data, threads, args, compile_))
                for name, values in runs.items():
                    rows.append({"data": data, "threads": threads, "setting": name,
                                 "cpu": statistics.median(v["cpu"] for v in values),
                                 "wall": statistics.median(v["wall"] for v in values),
                                 "steps": values[0]["steps"]})  # fmt: skip
    steal = steal_share(counters, cpu_counters())
    print(f"# CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); torch threads {args.threads}; "
          f"~{args.steps} steps a run x {args.repeats} repeats, alternating; baseline "
          f"{args.baseline}")  # fmt: skip
    shown = "not measured (no /proc/stat)" if steal is None else f"{100 * steal:.1f}%"
    print(f"# host CPU time stolen by other guests during the runs: {shown}")
    print("| data | threads | setting | CPU ms/step | wall ms/step | CPU vs baseline | "
          "wall vs baseline |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for row in rows:
        base = next(r for r in rows if r["data"] == row["data"]
                    and r["threads"] == row["threads"] and r["setting"].startswith("baseline"))  # fmt: skip
        row["cpu_ratio"], row["wall_ratio"] = base["cpu"] / row["cpu"], base["wall"] / row["wall"]
        print(f"| {row['data']} | {row['threads']} | {row['setting']} | {1e3 * row['cpu']:.1f} | "
              f"{1e3 * row['wall']:.1f} | {row['cpu_ratio']:.2f}x | {row['wall_ratio']:.2f}x |")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
