"""Ctrl-C during training: the first press finishes the current step and stops, the second aborts.

Every model's training loop runs inside :class:`GracefulStop`, so a user who presses Ctrl-C in a
notebook keeps a model whose weights are those of the last finished step (and, where the loop
keeps the best epoch, that epoch's), gets a ``KeyboardInterrupt`` that says so, and finds the
SIGINT handler that was in place before training restored.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any


class GracefulStop:
    """Context manager catching the first Ctrl-C as a stop request.

    Parameters
    ----------
    on_request
        Called once at the first Ctrl-C (e.g. to tell a trainer to stop); loops that are not
        told may read :attr:`requested` after each step instead.
    """

    def __init__(self, on_request: Callable[[], None] | None = None) -> None:
        self.on_request = on_request
        self.requested = False
        self.steps = 0  # optimiser steps taken, counted by the loop
        self._previous: Any = None
        self._active = threading.current_thread() is threading.main_thread()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # the second Ctrl-C, whatever handler was there before training
            raise KeyboardInterrupt
        self.requested = True
        if self.on_request is not None:
            self.on_request()
        print("Ctrl-C: stopping after this step (press it again to abort now)", file=sys.stderr)

    def __enter__(self) -> GracefulStop:
        if self._active:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active:
            previous = self._previous if self._previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, previous)

    def raise_if_requested(self, what: str) -> None:
        """After the model is consistent again: turn a stop request into ``KeyboardInterrupt``."""
        if self.requested:
            msg = (
                f"{what} stopped by Ctrl-C after {self.steps} optimiser steps; the model keeps the "
                "weights it had when it stopped and its history so far"
            )
            raise KeyboardInterrupt(msg)
