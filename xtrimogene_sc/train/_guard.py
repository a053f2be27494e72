"""Guards around ``XTrimoGene.train``: argument checks, Ctrl-C handling, honest ``is_trained_``.

scvi-tools 1.4.2 runs Lightning's ``Trainer.fit``. On Ctrl-C Lightning catches the
``KeyboardInterrupt``, sets SIGINT to *ignored* for the rest of the process and calls
``sys.exit(1)``; scvi-tools then prints ``Exception raised during training. <class 'NameError'>
1`` (it prints the class ``NameError`` by mistake) and re-raises the ``SystemExit``: a notebook
user sees a ``NameError`` and a ``SystemExit``, not an interruption. :func:`guarded_fit` turns
the first Ctrl-C into a stop after the current step, a second one into Lightning's immediate
stop, and both into a ``KeyboardInterrupt`` with a one-line message; the SIGINT handler that was
in place before training is restored.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from lightning.pytorch.trainer.states import TrainerStatus

from xtrimogene_sc._arguments import (
    require_bool,
    require_int_in,
    require_learning_rates,
    require_positive_int,
    require_real,
)
from xtrimogene_sc.base._interrupt import GracefulStop

_SCVI_NOISE = "Exception raised during training."


def default_max_epochs(n_obs: int) -> int:
    """Epochs when ``max_epochs=None``: about 20,000 cells seen, between 1 and 50 passes."""
    return max(1, min(50, round(20_000 / max(n_obs, 1))))


def check_train_args(
    max_epochs: Any,
    *,
    n_obs: int,
    batch_size: Any,
    lr: Any,
    weight_decay: Any,
    warmup_fraction: Any,
    train_size: Any,
    gradient_clip_val: Any,
    num_workers: Any,
    compile: Any = False,
) -> int:
    """Validate ``train()`` arguments before anything changes; return the epochs to run.

    Raises
    ------
    ValueError
        Naming the argument, its value and what is allowed.
    """
    if max_epochs is None:
        max_epochs = default_max_epochs(n_obs)
    default = f" (or None for the default, {default_max_epochs(n_obs)} for {n_obs:,} cells)"
    require_positive_int("max_epochs", max_epochs, default)
    require_positive_int("batch_size", batch_size)
    require_int_in("num_workers", num_workers, 0, None)
    require_learning_rates(lr, weight_decay)
    require_real("warmup_fraction", warmup_fraction, lambda v: 0 <= v < 1, "in [0, 1)")
    require_real("train_size", train_size, lambda v: 0 < v <= 1, "in (0, 1]")
    if gradient_clip_val is not None:
        require_real("gradient_clip_val", gradient_clip_val, lambda v: v >= 0, "None or >= 0")
    require_bool("compile", compile)
    return int(max_epochs)


# CPU seconds a training cell costs with the full decoder, which runs all 19,266 positions of
# every cell: 47 s an epoch of the 630 training cells of the bundled pbmc68k set on 2 cores
# (issue 33), against 1.7 s with decoder_mode="masked"
_FULL_DECODER_SECONDS_PER_CELL = 0.075
_warned_slow_runs: set[str] = set()


def warn_slow_cpu_run(decoder_mode: str, device: str, cells_seen: int) -> None:
    """Warn once a process when a CPU run with the full decoder will take more than a minute.

    ``cells_seen`` is training cells times epochs. The warning names the faster setting.
    """
    if device != "cpu" or decoder_mode != "full" or "full" in _warned_slow_runs:
        return
    minutes = cells_seen * _FULL_DECODER_SECONDS_PER_CELL / 60
    if minutes < 1:
        return
    _warned_slow_runs.add("full")
    warnings.warn(
        f"training with decoder_mode='full' on a CPU decodes all 19,266 positions of every "
        f"cell: this run ({cells_seen:,} cells seen) takes roughly {minutes:.0f} min on 2 cores. "
        "decoder_mode='masked' (what SMALL_DATA_RECIPE uses) decodes only the encoder's and the "
        "masked positions and is about 28x faster a step; keep 'full' for parity with the "
        "reference model",
        UserWarning,
        stacklevel=3,
    )


def check_training_cells(n_train: int, n_obs: int, train_size: float) -> None:
    """Refuse a split that leaves no training cell (the run would take zero steps)."""
    if n_train < 1:
        msg = (
            f"train() needs at least one training cell, but train_size={train_size} of "
            f"{n_obs} cells leaves none (the rest validates); add cells or pass train_size=1.0"
        )
        raise ValueError(msg)


@contextlib.contextmanager
def guarded_fit(model: Any, trainer: Any) -> Iterator[None]:
    """Run a fit with Ctrl-C turned into ``KeyboardInterrupt`` and an honest ``is_trained_``.

    ``model.is_trained_`` keeps its previous value when no optimiser step ran, and is set when
    steps ran, also when training was interrupted.
    """
    was_trained = bool(model.is_trained_)
    stop = GracefulStop(on_request=lambda: setattr(trainer, "should_stop", True))
    try:
        with stop, contextlib.redirect_stdout(_DropLine(sys.stdout, _SCVI_NOISE)):
            yield
    except SystemExit as err:
        # Lightning calls sys.exit(1) while handling the KeyboardInterrupt it caught
        if trainer.state.status != TrainerStatus.INTERRUPTED or not isinstance(
            err.__context__, KeyboardInterrupt
        ):
            raise
        model.module.eval()
        model.is_trained_ = was_trained or trainer.global_step > 0  # scvi-tools skipped it
        msg = (
            f"training aborted by Ctrl-C after {trainer.global_step} optimiser steps; the model "
            "holds the weights of the last finished step"
        )
        raise KeyboardInterrupt(msg) from err.__context__
    finally:
        if trainer.global_step == 0:
            model.is_trained_ = was_trained
    if stop.requested:
        msg = (
            f"training stopped by Ctrl-C after {trainer.global_step} optimiser steps; the model "
            "keeps those weights and model.history the epochs run so far"
        )
        raise KeyboardInterrupt(msg)


class _DropLine:
    """A text stream that forwards everything except ``print`` calls starting with ``prefix``."""

    def __init__(self, stream: Any, prefix: str) -> None:
        self._stream = stream
        self._prefix = prefix
        self._dropping = False

    def write(self, text: str) -> int:
        if not self._dropping and text.startswith(self._prefix):
            self._dropping = True
        if self._dropping:
            self._dropping = not text.endswith("\n")
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
