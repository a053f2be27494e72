"""The shell every task model shares: where its weights are, and how its training is guarded.

A task model (annotation, perturbation, drug combination, or one you add) subclasses
:class:`TaskModel`, names its saved-model ``kind`` and returns its torch module from
:meth:`TaskModel._weights`. It then has ``device``/``to_device``, and its ``train`` runs the loop
inside :meth:`TaskModel._training`, which turns Ctrl-C into a stop after the current step. The
argument checks (:mod:`xtrimogene_sc._arguments`) and the saved format
(:mod:`xtrimogene_sc.base._saved`) are the other two shared pieces.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import nn

from xtrimogene_sc.base._interrupt import GracefulStop


class TaskModel:
    """Base of the task models: device placement and guarded training."""

    #: the saved-model kind (see :data:`xtrimogene_sc.base._saved.KINDS`)
    kind: ClassVar[str]

    def _weights(self) -> nn.Module:
        """The torch module holding every weight of the model."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return next(self._weights().parameters()).device

    def to_device(self, device: str | torch.device) -> None:
        """Move the weights, e.g. to ``"cuda:0"``."""
        self._weights().to(device)

    @contextlib.contextmanager
    def _training(self, what: str) -> Iterator[GracefulStop]:
        """Run a training loop; a first Ctrl-C asks it to stop.

        The loop counts its optimiser steps in ``stop.steps`` and ends after the step during
        which ``stop.requested`` became true; the ``with`` body completes, so the model is left
        consistent, and then a ``KeyboardInterrupt`` saying how far training got is raised.
        """
        stop = GracefulStop()
        with stop:
            yield stop
        stop.raise_if_requested(what)
