"""Training: Ctrl-C surfaces as KeyboardInterrupt, is_trained tells the truth."""

from __future__ import annotations

import signal
import threading

import lightning.pytorch as pl
import pytest
from reliability_support import cells, quiet, tiny_model

import xtrimogene_sc as xtg

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGINT"),
    reason="SIGINT handlers need the main thread",
)


class SendSigint(pl.Callback):
    """Sends SIGINT to this process after optimiser step ``step`` (``times`` in a row)."""

    def __init__(self, step: int, times: int = 1) -> None:
        self.step, self.times = step, times

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.times:
            for _ in range(self.times):
                # raise_signal delivers to this (main) thread, so its handler runs before the
                # next one; os.kill may land on a worker thread and two pending SIGINTs then merge
                signal.raise_signal(signal.SIGINT)
            self.times = 0


class RaiseKeyboardInterrupt(pl.Callback):
    """What Python does when Ctrl-C lands in the middle of a step."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 2:
            raise KeyboardInterrupt


@pytest.fixture
def model() -> xtg.XTrimoGene:
    adata = cells(n_obs=64)
    quiet(xtg.XTrimoGene.setup_anndata, adata)
    return tiny_model(adata)


def _train(model: xtg.XTrimoGene, callback: pl.Callback | None = None, **kwargs) -> None:
    callbacks = [] if callback is None else [callback]
    model.train(
        max_epochs=5, batch_size=8, enable_progress_bar=False, callbacks=callbacks, **kwargs
    )


@pytest.mark.parametrize(
    ("callback", "message"),
    [
        (SendSigint(step=3), "training stopped by Ctrl-C after 3 optimiser steps"),
        (SendSigint(step=3, times=2), "training aborted by Ctrl-C after 3 optimiser steps"),
        (RaiseKeyboardInterrupt(), "training aborted by Ctrl-C after 2 optimiser steps"),
    ],
    ids=["one-ctrl-c-stops-after-the-step", "two-ctrl-c-abort", "interrupt-inside-a-step"],
)
def test_ctrl_c_is_a_keyboard_interrupt_with_one_line(
    model: xtg.XTrimoGene, callback: pl.Callback, message: str, capsys: pytest.CaptureFixture
) -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match=message):
        _train(model, callback)
    assert "NameError" not in capsys.readouterr().out  # scvi-tools' misleading print is gone
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C works again afterwards
    assert model.is_trained  # it did take steps; the weights are those of the last one
    assert not model.module.training
    assert model.get_latent_representation(progress=False).shape[0] == 64


def test_two_ctrl_c_abort_whatever_handler_was_there_before(model: xtg.XTrimoGene) -> None:
    """The second Ctrl-C aborts even where SIGINT was ignored before training (Lightning leaves it
    ignored after an interrupted fit of its own), and that setting is restored afterwards."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt, match="training aborted by Ctrl-C after 3"):
            _train(model, SendSigint(step=3, times=2))
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_no_step_leaves_the_model_untrained(model: xtg.XTrimoGene) -> None:
    _train(model, max_steps=0)
    assert not model.is_trained


def test_failed_training_keeps_the_previous_state(model: xtg.XTrimoGene) -> None:
    with pytest.raises(ValueError, match="max_epochs"):
        model.train(max_epochs=0)
    assert not model.is_trained
    assert model.history is None or len(model.history) == 0
