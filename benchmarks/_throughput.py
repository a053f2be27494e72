"""Helpers of ``bench_efficiency.py``: a matmul peak to compute MFU against, and the user-API
throughput worker (``XTrimoGene.train`` and ``get_latent_representation`` on an AnnData)."""

from __future__ import annotations

import time
import warnings
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp
import torch

NOMINAL_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}


def matmul_peak_tflops(device: torch.device, *, size: int = 4096, repeats: int = 5) -> float:
    """Best measured dense-matmul rate (TFLOP/s): bf16 on CUDA, fp32 on CPU."""
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    size = size if cuda else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        (a @ b).sum()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def nominal_peak_tflops(device: torch.device) -> float | None:
    """Datasheet dense bf16 peak of a known GPU, else ``None``."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in NOMINAL_BF16_TFLOPS.items() if k in name), None)


def synthetic_anndata(n_cells: int, n_genes: int, density: float, seed: int = 0) -> ad.AnnData:
    """Cells of :func:`bench_asymmetric_vs_dense.synthetic_cells` as an AnnData of raw counts."""
    from xtrimogene_sc.data import GeneVocab

    rng = np.random.default_rng(seed)
    nnz = max(1, round(density * n_genes))
    gene_mean = rng.lognormal(0.0, 1.0, size=n_genes)
    detect = gene_mean / gene_mean.sum()
    rows = [
        np.sort(rng.choice(n_genes, size=nnz, replace=False, p=detect)) for _ in range(n_cells)
    ]
    data = 1 + rng.negative_binomial(2, 0.5, size=n_cells * nnz).astype(np.float32)
    X = sp.csr_matrix(
        (data, np.concatenate(rows), np.arange(n_cells + 1) * nnz), shape=(n_cells, n_genes)
    )
    adata = ad.AnnData(X)
    adata.var_names = list(GeneVocab.default().names[:n_genes])
    return adata


def api_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Cells per second through ``XTrimoGene.train`` (one epoch after a warm-up epoch) and
    ``get_latent_representation``, on a fresh synthetic AnnData."""
    import xtrimogene_sc as xtg

    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    adata = synthetic_anndata(job["cells"], job["genes"], job["density"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xtg.XTrimoGene.setup_anndata(adata)
        model = xtg.XTrimoGene(adata, preset=job["preset"], decoder_mode=job["mode"],
                               encoder_dropout=job["dropout"])  # fmt: skip
        accelerator = "gpu" if job["device"] == "cuda" else "cpu"
        kwargs = {"batch_size": job["batch"], "train_size": 1.0, "accelerator": accelerator,
                  "devices": 1, "enable_progress_bar": False, "enable_model_summary": False,
                  "logger": False, "enable_checkpointing": False}  # fmt: skip
        model.train(max_epochs=1, **kwargs)  # warm-up: Lightning start-up, allocator, kernels
        start = time.perf_counter()
        model.train(max_epochs=2, **kwargs)
        train_s = time.perf_counter() - start
        model.get_latent_representation(batch_size=64, progress=False)  # warm-up
        start = time.perf_counter()
        model.get_latent_representation(batch_size=64, progress=False)
        embed_s = time.perf_counter() - start
    return {"train_cells_s": 2 * job["cells"] / train_s, "embed_cells_s": job["cells"] / embed_s}
