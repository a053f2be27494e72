"""Command line: ``xtrimogene-sc demo``, ``embed``, ``preprocess`` and ``pretrain``.

Every subcommand reports a user error (bad argument, missing or wrong path, bad config value,
unreadable file) as one line on stderr, ``xtrimogene-sc <command>: <what is wrong>``, and exits
with code 2; Ctrl-C exits with code 130. Tracebacks are kept for bugs.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from collections.abc import Sequence

from xtrimogene_sc._cli_common import Parser, positive_int, user_command


@user_command("demo")
def _demo(args: argparse.Namespace) -> int:
    from xtrimogene_sc._demo import comparison_table, run_demo

    metrics = run_demo(
        args.out, epochs=args.epochs, preset=args.preset, decoder_mode=args.decoder_mode,
        seed=args.seed,
    )  # fmt: skip
    print(json.dumps(metrics, indent=2))
    print(comparison_table(metrics))
    print(f"wrote {args.out}/pbmc_xtg.h5ad, {args.out}/umap.png, {args.out}/model/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``xtrimogene-sc`` argument parser with every subcommand."""
    from xtrimogene_sc import __version__

    parser = Parser(prog="xtrimogene-sc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="train, embed, cluster and annotate the bundled PBMC data")
    demo.add_argument("--out", default="xtg_demo", help="output folder (default: xtg_demo)")
    demo.add_argument("--epochs", type=positive_int, default=None,
                      help="default: the small-data recipe's")  # fmt: skip
    demo.add_argument("--preset", default=None, help="default: the small-data recipe's")
    demo.add_argument("--decoder-mode", choices=["masked", "full"], default=None,
                      help="'full' is the reference decoder (about 15x slower on CPU)")  # fmt: skip
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    from xtrimogene_sc._cli_embed import add_subcommand as add_embed
    from xtrimogene_sc._cli_pretrain import add_subcommands

    add_embed(sub)
    add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xtrimogene-sc`` command."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    formatwarning, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        return int(args.func(args))
    finally:
        warnings.formatwarning = formatwarning


def _one_line_warning(
    message: Warning | str, category: type[Warning], *args: object, **kw: object
) -> str:
    return f"xtrimogene-sc: {category.__name__}: {' '.join(str(message).split())}\n"


if __name__ == "__main__":
    raise SystemExit(main())
