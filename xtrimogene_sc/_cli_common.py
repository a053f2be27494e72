"""Shared pieces of the ``xtrimogene-sc`` subcommands: one-line user errors, argument types."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
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
