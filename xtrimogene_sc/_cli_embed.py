"""``xtrimogene-sc embed``: embed an h5ad file with a saved model or a scFoundation checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from xtrimogene_sc._cli_common import positive_int, user_command

_POOLINGS = ["concat", "max", "mean", "depth_tokens", "max_all_tokens"]


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Register ``embed`` on the main parser's subcommands."""
    p = subparsers.add_parser(
        "embed",
        help="embed the cells of an .h5ad file (streamed) with a model directory or models.ckpt",
        description="Embed cells of a (possibly larger than memory) .h5ad file and write a copy "
        "with the embedding in obsm. --checkpoint takes a directory written by model.save() or "
        "the pretraining export, or a released scFoundation models.ckpt.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="model directory or .ckpt file")
    p.add_argument("--key", default="cell", choices=["cell", "gene", "rde"],
                   help="which weights of a .ckpt file (default: cell)")  # fmt: skip
    p.add_argument("--input", required=True, type=Path, help=".h5ad of raw counts")
    p.add_argument("--output", required=True, type=Path, help=".h5ad to write (may be --input)")
    p.add_argument("--obsm-key", default="X_xtg", help="obsm key to write (default: X_xtg)")
    p.add_argument("--pooling", default=None, choices=_POOLINGS,
                   help="default: the model's (concat; mean for a model trained by the demo "
                   "recipe)")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=64, help="cells per forward pass")
    p.add_argument("--device", default="auto", help="'cpu', 'cuda' or 'cuda:N' (default: auto)")
    p.add_argument("--precision", default=None, choices=["bf16", "32", "32-strict"],
                   help="default: bf16 on GPUs that support it, else 32")  # fmt: skip
    p.add_argument("--tgthighres", default=None, metavar="CODE",
                   help="target depth T as the reference code: t4 (T=4), f1 (T=S), a5 (T=S+5); "
                   "default f1")  # fmt: skip
    p.add_argument("--input-type", default="counts", choices=["counts", "bulk"],
                   help="'bulk': TPM/FPKM profiles, T = S = log10 total")  # fmt: skip
    p.add_argument("--layer", default=None, help="layer holding raw counts (default: X)")
    p.add_argument("--gene-symbols-key", default=None, help="var column of gene symbols")
    p.add_argument("--genes", type=Path, default=None, metavar="FILE.h5",
                   help="also write gene (decoder context) embeddings to this HDF5 file")  # fmt: skip
    p.add_argument("--gene-names", default=None,
                   help="comma-separated symbols for --genes (default: all 19,264)")  # fmt: skip
    p.add_argument("--gene-reduce", default="mean", choices=["mean", "none"],
                   help="'mean' over cells (genes x d) or 'none' (cells x genes x d)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--allow-pickle", action="store_true",
                   help="UNSAFE for untrusted files: allow a .ckpt that needs full pickle")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run_embed)


@user_command("embed")
def run_embed(args: argparse.Namespace) -> int:
    """Run the ``embed`` subcommand; user errors become one line on stderr and exit code 2."""
    import torch

    from xtrimogene_sc.data._tokenize import DepthSpec, depth_from_reference_code
    from xtrimogene_sc.model import XTrimoGene
    from xtrimogene_sc.tl import embed_h5ad

    depth = depth_from_reference_code(args.tgthighres) if args.tgthighres else DepthSpec()
    device = _device(args.device, torch.cuda.is_available())
    model = XTrimoGene.load(args.checkpoint, key=args.key, allow_pickle=args.allow_pickle)
    model.to_device(device)
    genes = None if args.gene_names is None else [g.strip() for g in args.gene_names.split(",")]
    out = embed_h5ad(
        args.input, model, output=args.output, key_added=args.obsm_key,
        genes_output=args.genes, genes=genes,
        gene_reduce=None if args.gene_reduce == "none" else "mean",
        overwrite=args.overwrite, pooling=args.pooling, batch_size=args.batch_size,
        layer=args.layer, gene_symbols_key=args.gene_symbols_key, t_mode=depth.mode,
        t_value=depth.value, input_type=args.input_type, precision=args.precision,
        progress=not args.no_progress,
    )  # fmt: skip
    print(out)
    return 0


def _device(choice: str, cuda_available: bool) -> str:
    if choice == "auto":
        return "cuda" if cuda_available else "cpu"
    if choice.startswith("cuda") and not cuda_available:
        msg = f"--device {choice}: no CUDA GPU is visible to torch; use --device cpu"
        raise ValueError(msg)
    if choice != "cpu" and not choice.startswith("cuda"):
        msg = f"--device must be 'cpu', 'cuda' or 'cuda:N', got {choice!r}"
        raise ValueError(msg)
    return choice
