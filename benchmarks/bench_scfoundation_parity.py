"""Parity of the scFoundation loader with the reference code, and batched vs one-cell-at-a-time speed.

Loads ``../shared/data/scfoundation_parity/tiny_models.ckpt`` (released layout, random weights)
and prints, for every output the reference recorded in ``reference_outputs.npz``, the largest
absolute difference at batch size 1 and 8, beside the tolerance the tests assert. Then times the
cell embedding of the same cells one at a time (how the reference script runs) and batched.

    python benchmarks/bench_scfoundation_parity.py [--repeat 20] [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp
import torch

import xtrimogene_sc as xtg
from xtrimogene_sc.data._tokenize import DepthSpec, tokenize_counts

PARITY = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "scfoundation_parity"
T4 = {"t_mode": "absolute", "t_value": 4.0}


def _max_diffs(ref: dict, adata: ad.AnnData, batch: int) -> dict[str, float]:
    cell = xtg.XTrimoGene.from_scfoundation(PARITY / "tiny_models.ckpt", key="cell")
    gene = xtg.XTrimoGene.from_scfoundation(PARITY / "tiny_models.ckpt", key="gene")
    emb = cell.get_latent_representation
    out = {
        "cell_embedding (concat, t4)": emb(adata, batch_size=batch, progress=False, **T4),
        "cell_embedding_2 (concat, f1)": emb(adata, batch_size=batch, progress=False),
        "cell_embedding_max (max_all_tokens, t4)": emb(
            adata, batch_size=batch, pooling="max_all_tokens", progress=False, **T4
        ),
    }
    genes = [xtg.GeneVocab.default().names[i] for i in ref["gene_context_genes"]]
    out["gene_context_emb (t4)"] = gene.get_gene_embeddings(
        adata, genes=genes, reduce=None, batch_size=batch, progress=False, **T4
    )
    counts = sp.csr_matrix(ref["counts"])
    identity = np.arange(counts.shape[1])
    with torch.no_grad():
        parts = [
            gene.module.reconstruct(
                tokenize_counts(counts[i : i + batch], identity, depth=DepthSpec("absolute", 4))
            )
            for i in range(0, 8, batch)
        ]
        out["gene_expression (t4)"] = torch.cat(parts)[:, :19264].numpy()
        cell_id = int(ref["masked_cell"])
        positions = torch.from_numpy(np.flatnonzero(ref["mask"]))
        rows = counts[: max(batch, cell_id + 1)]
        masked = gene.module.reconstruct(
            tokenize_counts(rows, identity, depth=DepthSpec("absolute", 4)),
            torch.full_like(positions, cell_id), positions,
        )  # fmt: skip
        out["masked_decoder_output"] = masked[cell_id].numpy()
    keys = {
        "cell_embedding (concat, t4)": "cell_embedding",
        "cell_embedding_2 (concat, f1)": "cell_embedding_2",
        "cell_embedding_max (max_all_tokens, t4)": "cell_embedding_max",
        "gene_context_emb (t4)": "gene_context_emb",
        "gene_expression (t4)": "gene_expression",
        "masked_decoder_output": "masked_decoder_output",
    }
    return {name: float(np.abs(out[name] - ref[keys[name]]).max()) for name in out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timing repetitions")
    parser.add_argument("--quick", action="store_true", help="one timing repetition (CI)")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    ref = dict(np.load(PARITY / "reference_outputs.npz"))
    adata = ad.AnnData(sp.csr_matrix(ref["counts"].astype(np.float32)))
    adata.var_names = list(xtg.GeneVocab.default().names)
    by_batch = {b: _max_diffs(ref, adata, b) for b in (1, 8)}
    print(f"torch {torch.__version__}, 1 thread, CPU")
    print(f"{'output':42s} {'batch 1':>9s} {'batch 8':>9s} {'tolerance':>9s}")
    for name in by_batch[1]:
        tol = 1e-5 if name.startswith("cell") else 1e-4
        print(f"{name:42s} {by_batch[1][name]:9.1e} {by_batch[8][name]:9.1e} {tol:9.0e}")

    model = xtg.XTrimoGene.from_scfoundation(PARITY / "tiny_models.ckpt", key="cell")
    cells = ad.concat([adata] * 8)  # 64 cells
    for label, batch in (("one cell at a time", 1), ("batched (64)", 64)):
        start = time.perf_counter()
        for _ in range(args.repeat):
            model.get_latent_representation(cells, batch_size=batch, progress=False, **T4)
        rate = args.repeat * cells.n_obs / (time.perf_counter() - start)
        print(f"cell embedding, {label:20s}: {rate:8.0f} cells/s")


if __name__ == "__main__":
    main()
