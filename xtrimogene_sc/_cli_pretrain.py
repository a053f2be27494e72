"""``xtrimogene-sc pretrain`` and ``xtrimogene-sc preprocess`` subcommands."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from xtrimogene_sc._cli_common import non_negative_int, positive_int, user_command

logger = logging.getLogger(__name__)


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``pretrain`` and ``preprocess`` on the main parser's subcommands.

    Each subcommand sets ``func``: a callable taking the parsed namespace and returning an exit
    code.
    """
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain a model from a TOML/JSON config (resumes from output_dir automatically)",
        description="Pretrain xTrimoGene on a streamed corpus; see docs/pretraining.md. "
        "Launch with torchrun or srun for several GPUs.",
    )
    p.add_argument("--config", required=True, type=Path, help="TOML or JSON run config")
    p.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="resume from output_dir/checkpoints/last.ckpt (default: the config's run.resume)",
    )
    p.add_argument("--output-dir", type=Path, default=None, help="override run.output_dir")
    p.set_defaults(func=_run_pretrain)

    q = subparsers.add_parser(
        "preprocess",
        help="convert h5ad files into the sharded corpus format the pretraining reads fastest",
    )
    q.add_argument("inputs", nargs="+", type=Path, help=".h5ad files or directories of them")
    q.add_argument("--output-dir", required=True, type=Path, help="corpus directory to write")
    q.add_argument(
        "--min-genes",
        type=non_negative_int,
        default=200,
        help="keep cells with >= this many genes",
    )
    q.add_argument("--layer", default=None, help="raw-count layer ('raw' for adata.raw.X)")
    q.add_argument("--gene-symbols-key", default=None, help="var column with gene symbols")
    q.add_argument(
        "--cells-per-shard", type=positive_int, default=100_000, help="cells per output shard"
    )
    q.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    q.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable inputs (named in a warning) instead of refusing all")  # fmt: skip
    q.set_defaults(func=_run_preprocess)


@user_command("pretrain")
def _run_pretrain(args: argparse.Namespace) -> int:
    from xtrimogene_sc.pretrain._config import PretrainConfig
    from xtrimogene_sc.pretrain._train import pretrain

    config = PretrainConfig.from_file(args.config)
    run: dict[str, object] = {}
    if args.resume is not None:
        run["resume"] = args.resume
    if args.output_dir is not None:
        run["output_dir"] = str(args.output_dir.resolve())
    if run:
        config = config.updated(run=run)
    model_dir = pretrain(config)
    logger.info("pretrained model written to %s", model_dir)
    print(model_dir)
    return 0


@user_command("preprocess")
def _run_preprocess(args: argparse.Namespace) -> int:
    from xtrimogene_sc.pretrain._preprocess import preprocess_h5ad

    inputs: list[Path] = []
    for path in args.inputs:  # directories contribute their .h5ad files, sorted
        found = sorted(path.glob("*.h5ad")) if path.is_dir() else [path]
        if not found:
            msg = f"{path}: no .h5ad files in this folder"
            raise ValueError(msg)
        inputs += found
    out = preprocess_h5ad(
        inputs,
        args.output_dir,
        min_genes=args.min_genes,
        layer=args.layer,
        gene_symbols_key=args.gene_symbols_key,
        cells_per_shard=args.cells_per_shard,
        progress=not args.no_progress,
        skip_bad=args.skip_bad,
    )
    print(out)
    return 0
