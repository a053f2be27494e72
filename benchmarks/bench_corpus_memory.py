"""Peak memory and throughput of StreamingCellDataset as the corpus grows (10k -> 1M cells).

Writes a synthetic corpus in the preprocessed shard format (``shards`` of ``--shard-cells`` cells),
then, for each corpus size N, streams the whole N-cell corpus (the first N / shard-cells shards)
through ``StreamingCellDataset`` with the default tokenizing transform, in a fresh subprocess, and
reports the peak RSS (``ru_maxrss``) and cells/s. Flat peak RSS across N = memory independent of
corpus size. The corpus is deleted afterwards unless ``--keep``.

The corpus is written by a subprocess too and this launcher imports only the standard library:
Linux carries a parent's RSS high-water mark into ``ru_maxrss`` of a child it spawns (vfork + exec),
so a launcher that had grown large would inflate every child's reading.

    python benchmarks/bench_corpus_memory.py                 # 1,000,000 cells (~6 GB on disk)
    python benchmarks/bench_corpus_memory.py --quick         # 100,000 cells
    python benchmarks/bench_corpus_memory.py --quick --format h5ad   # backed h5ad files instead
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_TEMPLATES = 8_000
N_EXPRESSED_GENES = 16_000  # vocabulary genes that are ever detected
WRITE_BLOCK = 2_000


def templates(mean_genes: int, rng):
    """Gene sets of N_TEMPLATES cells: skewed detection rates, 0.6x-1.4x mean_genes genes per cell."""
    import numpy as np
    import scipy.sparse as sp

    from xtrimogene_sc._constants import TOKENS

    genes = rng.choice(TOKENS.N_GENES, N_EXPRESSED_GENES, replace=False)
    weight = rng.pareto(1.0, N_EXPRESSED_GENES) + 0.05
    sizes = rng.integers(int(0.6 * mean_genes), int(1.4 * mean_genes) + 1, N_TEMPLATES)
    log_p = np.log(weight / weight.sum()).astype(np.float32)
    rows = []
    for start in range(0, N_TEMPLATES, 500):  # Gumbel top-k: weighted sampling without replacement
        keys = log_p + rng.gumbel(size=(min(500, N_TEMPLATES - start), N_EXPRESSED_GENES)).astype(
            np.float32
        )
        for key, n in zip(keys, sizes[start : start + 500], strict=True):
            rows.append(np.sort(genes[np.argpartition(-key, n)[:n]]))
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])]
    indices = np.concatenate(rows)
    return sp.csr_matrix(
        (np.ones(len(indices), np.float32), indices, indptr), shape=(N_TEMPLATES, TOKENS.N_GENES)
    )


def synthetic_blocks(n_cells: int, mean_genes: int, seed: int):
    """Aligned raw-count CSR blocks: template gene sets with fresh geometric counts."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = templates(mean_genes, rng)
    for start in range(0, n_cells, WRITE_BLOCK):
        block = base[rng.integers(0, N_TEMPLATES, min(WRITE_BLOCK, n_cells - start))]
        block.data = rng.geometric(0.4, block.nnz).astype(np.float32)  # counts >= 1, mean 2.5
        yield block


def write_corpus(root: Path, n_cells: int, shard_cells: int, mean_genes: int, seed: int) -> list:
    """Preprocessed shards (``root/shards``) and a manifest; returns the shard entries."""
    from xtrimogene_sc.pretrain._manifest import new_manifest, write_manifest
    from xtrimogene_sc.pretrain._preprocess import ShardWriter

    writer = ShardWriter(root / "shards", "synthetic", shard_cells, source="synthetic")
    for block in synthetic_blocks(n_cells, mean_genes, seed):
        writer.add(block)
    manifest = new_manifest(synthetic=True, seed=seed, mean_genes=mean_genes)
    manifest["shards"] = writer.finish()
    manifest["complete"] = True
    write_manifest(root, manifest)
    return manifest["shards"]


def write_h5ad_corpus(
    root: Path, n_cells: int, shard_cells: int, mean_genes: int, seed: int
) -> list:
    """The same cells as h5ad files of ``shard_cells`` cells (var names: vocabulary symbols)."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from xtrimogene_sc.data import GeneVocab

    var = pd.DataFrame(index=pd.Index(GeneVocab.default().names.astype(str)))
    (root / "h5ad").mkdir()
    pending, n_pending, files = [], 0, []
    blocks = synthetic_blocks(n_cells, mean_genes, seed)
    for block in [*blocks, None]:
        if block is not None:
            pending.append(block)
            n_pending += block.shape[0]
        if pending and (n_pending >= shard_cells or block is None):
            X = sp.vstack(pending, format="csr")
            path = root / "h5ad" / f"part-{len(files):04d}.h5ad"
            ad.AnnData(X=X, var=var).write_h5ad(path)
            files.append({"path": str(path), "n_cells": X.shape[0], "nnz": X.nnz})
            pending, n_pending = [], 0
    return files


def make_view(root: Path, shards: list, n_cells: int, fmt: str) -> Path:
    """A corpus folder holding (by manifest or symlinks) the first shards with ``n_cells`` cells."""
    from xtrimogene_sc.pretrain._manifest import new_manifest, write_manifest

    view = root / f"view-{n_cells}"
    view.mkdir(exist_ok=True)
    chosen, total = [], 0
    for shard in shards:
        if total >= n_cells:
            break
        chosen.append(shard)
        total += shard["n_cells"]
    if fmt == "h5ad":
        for shard in chosen:
            (view / Path(shard["path"]).name).symlink_to(shard["path"])
    else:
        manifest = new_manifest(synthetic=True) | {"complete": True}
        manifest["shards"] = [s | {"path": f"../{s['path']}"} for s in chosen]
        write_manifest(view, manifest)
    return view


def write_all(root: Path, fmt: str, total: int, args: argparse.Namespace) -> dict:
    """Child process: write the corpus and one view per corpus size."""
    t0 = time.perf_counter()
    write = write_h5ad_corpus if fmt == "h5ad" else write_corpus
    shards = write(root, total, args.shard_cells, args.mean_genes, args.seed)
    sizes = [n for n in (10_000, 100_000, 1_000_000) if n < total] + [total]
    return {
        "seconds": time.perf_counter() - t0,
        "n_cells": sum(s["n_cells"] for s in shards),
        "nnz": sum(s["nnz"] for s in shards),
        "n_shards": len(shards),
        "views": [str(make_view(root, shards, n, fmt)) for n in sizes],
    }


def current_rss_mb() -> float:
    """Resident set size now (Linux /proc; NaN elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return float("nan")
    return pages * resource.getpagesize() / 2**20


def vm_hwm_mb() -> float:
    """Peak RSS of this process image (Linux VmHWM; NaN elsewhere)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return float("nan")
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), None)
    return float(line.split()[1]) / 1024 if line else float("nan")


def stream(view: Path, fmt: str, batch_size: int, shuffle_buffer: int) -> dict:
    """Child process: stream the whole view once; report RSS along the way, and speed."""
    from xtrimogene_sc.pretrain._sources import H5adDirectorySource, PreprocessedSource
    from xtrimogene_sc.pretrain._stream import StreamingCellDataset

    source = H5adDirectorySource(view) if fmt == "h5ad" else PreprocessedSource(view)
    dataset = StreamingCellDataset(source, batch_size=batch_size, shuffle_buffer=shuffle_buffer)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    checkpoints = {int(source.n_cells * f): f for f in (0.25, 0.5, 1.0)}
    trace = {}
    start, n_cells, n_tokens = time.perf_counter(), 0, 0
    for batch in dataset:
        n_cells += batch.n_cells
        n_tokens += batch.pos.numel()
        for at, fraction in checkpoints.items():
            if n_cells >= at and fraction not in trace:
                trace[fraction] = current_rss_mb()
    seconds = time.perf_counter() - start
    return {
        "corpus_cells": source.n_cells,
        "shards": len(source.shard_ids()),
        "streamed_cells": n_cells,
        "mean_genes": n_tokens / max(n_cells, 1),
        "seconds": seconds,
        "cells_per_s": n_cells / seconds,
        "rss_after_import_mb": rss_before,
        "rss_trace_mb": [trace.get(f, float("nan")) for f in (0.25, 0.5, 1.0)],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "vm_hwm_mb": vm_hwm_mb(),
    }


def run_child(arguments: list[str]) -> dict:
    """Run this script in a fresh interpreter and parse the JSON it prints last."""
    cmd = [sys.executable, __file__, *arguments]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=1_000_000, help="total corpus cells")
    parser.add_argument(
        "--quick", action="store_true", help="100k-cell corpus (10k and 100k streams)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the corpus on disk")
    parser.add_argument("--dir", type=Path, default=None, help="parent folder of the corpus")
    parser.add_argument("--shard-cells", type=int, default=10_000)
    parser.add_argument("--mean-genes", type=int, default=1_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shuffle-buffer", type=int, default=16_384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--format", choices=["preprocessed", "h5ad"], default="preprocessed",
        help="corpus format read by the stream (h5ad: H5adDirectorySource over backed files)",
    )  # fmt: skip
    parser.add_argument("--child-write", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-stream", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    total = 100_000 if args.quick else args.cells
    if args.child_write is not None:
        print(json.dumps(write_all(args.child_write, args.format, total, args)))
        return
    if args.child_stream is not None:
        result = stream(args.child_stream, args.format, args.batch_size, args.shuffle_buffer)
        print(json.dumps(result))
        return
    root = Path(tempfile.mkdtemp(prefix="xtg-corpus-", dir=args.dir))
    common = ["--format", args.format, "--batch-size", str(args.batch_size),
              "--shuffle-buffer", str(args.shuffle_buffer), "--cells", str(total),
              "--shard-cells", str(args.shard_cells), "--mean-genes", str(args.mean_genes),
              "--seed", str(args.seed)]  # fmt: skip
    try:
        corpus = run_child(["--child-write", str(root), *common])
        disk = sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink())
        print(
            f"corpus ({args.format}): {corpus['n_cells']:,} cells in {corpus['n_shards']} shards, "
            f"{corpus['nnz'] / corpus['n_cells']:.0f} genes/cell, {disk / 1e9:.2f} GB, "
            f"written in {corpus['seconds']:.0f} s at {root}",
            flush=True,
        )
        print(
            f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"batch_size={args.batch_size}, shuffle_buffer={args.shuffle_buffer}, "
            "default tokenizing transform, one process (num_workers=0)"
        )
        print(
            "| corpus cells | shards | streamed cells | seconds | cells/s | peak RSS after setup (MB) "
            "| RSS at 25% / 50% / 100% of stream (MB) | peak RSS: ru_maxrss (MB) | VmHWM (MB) |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for view in corpus["views"]:
            r = run_child(["--child-stream", view, *common])
            trace = " / ".join(f"{x:.0f}" for x in r["rss_trace_mb"])
            print(
                f"| {r['corpus_cells']:,} | {r['shards']} | {r['streamed_cells']:,} | "
                f"{r['seconds']:.1f} | {r['cells_per_s']:,.0f} | {r['rss_after_import_mb']:.0f} | "
                f"{trace} | {r['peak_rss_mb']:.0f} | {r['vm_hwm_mb']:.0f} |",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
