"""The demo recipe's training speed on the bundled cells: today's step against earlier ones.

Issue 10 asks for the demo (``SMALL_DATA_RECIPE`` on the 700 bundled pbmc68k cells) to finish
in under 3 minutes on 2 CPU cores, and most of that is training. This script trains the recipe's
model through ``XTrimoGene.train`` (data loading and Lightning included) for ``--epochs`` epochs
in three settings, alternating, in the same process:

* ``torch defaults``: the ``tiny`` preset's two encoder layers with dropout 0.1 through
  ``torch.nn.Dropout`` (``bernoulli_`` masks) and the for-each-tensor ``AdamW``, as the package
  first trained;
* ``2 layers, dropout 0.1``: the same model with the encoder's
  :class:`~xtrimogene_sc.nn._blocks.Dropout` (``rand >= p`` masks, same distribution) and the
  fused ``AdamW`` kernel: the recipe until 2026-12-01;
* ``recipe``: :data:`~xtrimogene_sc.model.SMALL_DATA_RECIPE` as it is (one encoder layer, no
  dropout: ``benchmarks/SMALL_DATA_RESULTS.md`` shows it scores alike).

All settings share the decoder's single gene-embedding lookup (it replaced two, with identical
results, and cannot be switched off). The full recipe's time follows from the per-step figure
and the recipe's step count, printed at the end. The header also prints the share of the host's
CPU time stolen by other guests while the settings ran (Linux): on a shared VM the same demo
took 2 min 54 s and 3 min 52 s on one day, and steps of different days compare only beside it.

    python benchmarks/bench_recipe_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from unittest import mock

import torch
from torch import nn


@contextlib.contextmanager
def torch_defaults(model) -> Iterator[None]:
    """Train ``model`` with ``nn.Dropout`` and the unfused ``AdamW`` while inside."""
    from xtrimogene_sc.nn._blocks import Dropout

    swapped = []
    for parent in model.module.modules():
        for name, child in parent.named_children():
            if isinstance(child, Dropout):
                setattr(parent, name, nn.Dropout(child.p))
                swapped.append((parent, name, child))
    adamw = torch.optim.AdamW

    def unfused(*args, **kwargs):
        kwargs["fused"] = None
        return adamw(*args, **kwargs)

    try:
        with mock.patch("torch.optim.AdamW", unfused):
            yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


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


def seconds_per_step(adata, recipe, epochs: int, baseline: bool, seed: int) -> float:
    """Wall seconds per optimiser step of ``epochs`` epochs of a fresh recipe model."""
    torch.manual_seed(seed)
    model = recipe.build(adata)
    kwargs = {**recipe.train_kwargs(adata.n_obs), "max_epochs": epochs}
    steps = epochs * recipe.steps_per_epoch(adata.n_obs, kwargs["train_size"])
    context = torch_defaults(model) if baseline else contextlib.nullcontext()
    with context:
        start = time.perf_counter()
        model.train(**kwargs, enable_progress_bar=False, logger=False,
                    enable_checkpointing=False, enable_model_summary=False)  # fmt: skip
        return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cells", type=int, default=None, help="only the first cells (tests)")
    args = parser.parse_args(argv)
    import xtrimogene_sc as xtg
    from xtrimogene_sc.model import SMALL_DATA_RECIPE

    torch.set_num_threads(args.threads)
    adata = xtg.datasets.pbmc68k_counts()
    if args.cells is not None:
        adata = adata[: args.cells].copy()
    before = replace(SMALL_DATA_RECIPE, encoder_depth=None, encoder_dropout=0.1)
    settings = {  # name: (recipe, with torch's defaults)
        "torch defaults": (before, True),
        "2 layers, dropout 0.1": (before, False),
        "recipe": (SMALL_DATA_RECIPE, False),
    }
    times: dict[str, list[float]] = {name: [] for name in settings}
    counters_before = cpu_counters()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xtg.XTrimoGene.setup_anndata(adata)
        for repeat in range(args.repeats):
            for name, (recipe, baseline) in settings.items():
                step = seconds_per_step(adata, recipe, args.epochs, baseline, repeat)
                times[name].append(step)
    steal = steal_share(counters_before, cpu_counters())
    medians = {name: statistics.median(values) for name, values in times.items()}
    n_steps = SMALL_DATA_RECIPE.epochs_for(adata.n_obs) * SMALL_DATA_RECIPE.steps_per_epoch(
        adata.n_obs
    )
    print(f"# {adata.n_obs} pbmc68k cells, recipe model, {args.threads} thread(s), "
          f"{args.epochs} epochs x {args.repeats} repeats, torch {torch.__version__}")  # fmt: skip
    shown = "not measured (no /proc/stat)" if steal is None else f"{100 * steal:.1f}%"
    print(f"# host CPU time stolen by other guests during the runs: {shown}")
    print("| setting | ms/step | vs torch defaults | recipe training (s) |")
    print("|---|---|---|---|")
    base = medians["torch defaults"]
    for name, value in medians.items():
        print(f"| {name} | {1e3 * value:.1f} | {base / value:.2f}x | {value * n_steps:.0f} |")
    return medians


if __name__ == "__main__":
    main()
