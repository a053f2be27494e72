"""Command line: ``xtrimogene-sc demo``, ``embed``, ``preprocess`` and ``pretrain``."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    from xtrimogene_sc._demo import run_demo

    metrics = run_demo(
        args.out, epochs=args.epochs, preset=args.preset, decoder_mode=args.decoder_mode,
        seed=args.seed,
    )  # fmt: skip
    print(json.dumps(metrics, indent=2))
    print(f"wrote {args.out}/pbmc_xtg.h5ad, {args.out}/umap.png, {args.out}/model/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``xtrimogene-sc`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="xtrimogene-sc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train, embed, cluster and annotate the bundled PBMC data")
    demo.add_argument("--out", default="xtg_demo", help="output folder (default: xtg_demo)")
    demo.add_argument("--epochs", type=int, default=10)
    demo.add_argument("--preset", default="tiny")
    demo.add_argument("--decoder-mode", choices=["masked", "full"], default="masked",
                      help="'full' is the reference decoder (about 15x slower on CPU)")  # fmt: skip
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    from xtrimogene_sc._cli_embed import add_subcommand as add_embed
    from xtrimogene_sc.pretrain._cli import add_subcommands

    add_embed(sub)
    add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xtrimogene-sc`` command."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
