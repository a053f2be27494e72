"""Command line: ``xtrimogene-sc demo``, ``embed``, ``preprocess`` and ``pretrain``.

Every subcommand reports a user error (bad argument, missing or wrong path, bad config value,
unreadable file) as one line on stderr, ``xtrimogene-sc <command>: <what is wrong>``, and exits
with code 2; Ctrl-C exits with code 130. Tracebacks are kept for bugs.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import NoReturn

#: Exceptions that mean the input was wrong, not the program.
USER_ERRORS = (ValueError, OSError, KeyError)
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

Command = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>`` as one line and exit with code 2."""
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def user_command(name: str) -> Callable[[Command], Command]:
    """Decorate a subcommand so that user errors become one stderr line and exit code 2."""

    def decorate(func: Command) -> Command:
        @functools.wraps(func)
        def run(args: argparse.Namespace) -> int:
            try:
                return int(func(args))
            except KeyboardInterrupt as err:
                detail = f": {one_line(err)}" if str(err) else ""
                print(f"xtrimogene-sc {name}: interrupted{detail}", file=sys.stderr)
                return EXIT_INTERRUPTED
            except USER_ERRORS as err:
                print(f"xtrimogene-sc {name}: {one_line(err)}", file=sys.stderr)
                return EXIT_USER_ERROR

        return run

    return decorate


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """Argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        msg = f"expected an integer >= {minimum}, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (a ``KeyError`` without its quotes)."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(text.split()) or type(err).__name__


@user_command("demo")
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
    from xtrimogene_sc import __version__

    parser = Parser(prog="xtrimogene-sc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="train, embed, cluster and annotate the bundled PBMC data")
    demo.add_argument("--out", default="xtg_demo", help="output folder (default: xtg_demo)")
    demo.add_argument("--epochs", type=positive_int, default=10)
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
