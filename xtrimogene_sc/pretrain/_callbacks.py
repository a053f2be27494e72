"""Lightning plumbing of a pretraining run: atomic checkpoints, data position, throughput."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from xtrimogene_sc.data._batch import SparseCells


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file, then ``os.replace`` it over the target.

    A run killed while saving leaves the previous ``last.ckpt`` intact instead of a truncated
    file. Remote (fsspec) paths fall back to Lightning's direct write.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        """Save ``checkpoint`` to ``path`` atomically (local file systems)."""
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(str(path).removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with staging.open("wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            if target.is_symlink():
                target.unlink()
            os.replace(staging, target)
        finally:
            staging.unlink(missing_ok=True)

    def remove_checkpoint(self, path: str | Path) -> None:
        """Delete a checkpoint file."""
        fs = get_filesystem(path)
        if fs.exists(path):
            fs.rm(path, recursive=True)


class StreamPosition(pl.Callback):
    """Track which batch of which data epoch the run is at, reseed per batch, resume exactly.

    The position (data epoch, batches consumed in it) is saved in every checkpoint. On resume the
    data module asks :meth:`start_position` and skips the consumed batches, so the run sees the
    same batches in the same order as an uninterrupted one. Before every batch the global torch
    RNG is reseeded from ``(seed, epoch, batch, rank)``, which makes masking and dropout a function
    of the data position too.

    Parameters
    ----------
    seed
        Base seed of the per-batch reseeding.
    reseed
        Reseed the global RNG before every batch.
    """

    def __init__(self, *, seed: int = 0, reseed: bool = True) -> None:
        self.seed = seed
        self.reseed = reseed
        self.epoch = 0
        self.batches = 0

    @property
    def state_key(self) -> str:
        """Checkpoint key of this callback's state."""
        return "StreamPosition"

    def start_position(self) -> tuple[int, int]:
        """``(epoch, batches_to_skip)`` to start the data stream from."""
        return self.epoch, self.batches

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch != self.epoch:
            self.epoch, self.batches = trainer.current_epoch, 0
        datamodule = trainer.datamodule
        if hasattr(datamodule, "seek"):
            datamodule.seek(self.epoch, self.batches)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.reseed:
            entropy = [self.seed, self.epoch, self.batches, trainer.global_rank]
            seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)
            torch.manual_seed(seed)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        # Runs before ModelCheckpoint (Lightning orders checkpoint callbacks last), so a
        # checkpoint written after this batch records it as consumed.
        self.batches += 1
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self.epoch, self.batches = self.epoch + 1, 0

    def state_dict(self) -> dict[str, int]:
        """Position saved in checkpoints."""
        return {"epoch": self.epoch, "batches": self.batches, "seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position from a checkpoint."""
        self.epoch = int(state_dict["epoch"])
        self.batches = int(state_dict["batches"])


class FinalCheckpoint(pl.Callback):
    """Write ``path`` after the last optimiser step when no periodic checkpoint falls on it.

    It is written from the same hook as the periodic checkpoints (the end of the batch), so it
    resumes the same way: a later run with a larger ``max_steps`` continues the data stream
    where this one stopped. (A checkpoint saved after ``fit`` returns would record the epoch as
    finished and restart the data at the next epoch.)
    """

    def __init__(self, path: str | Path, *, every_n_steps: int) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        step = trainer.global_step
        if 0 < trainer.max_steps <= step and step % self.every_n_steps:
            trainer.save_checkpoint(self.path, weights_only=False)


class ThroughputMonitor(pl.Callback):
    """Log ``cells_per_s`` and ``tokens_per_s`` (non-zero genes) summed over all devices.

    Rates are measured over the optimiser steps since the previous log, every
    ``log_every_n_steps`` steps, on every rank at the same step (the sum is a collective).
    """

    def __init__(self, *, log_every_n_steps: int = 50) -> None:
        self.log_every_n_steps = log_every_n_steps
        self._cells = 0
        self._tokens = 0
        self._start: float | None = None
        self._last_step = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset(trainer.global_step)

    def _reset(self, step: int) -> None:
        self._cells = self._tokens = 0
        self._start = time.perf_counter()
        self._last_step = step

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if isinstance(batch, SparseCells):
            self._cells += batch.n_cells
            self._tokens += int(batch.pos.numel())
        step = trainer.global_step
        if step == self._last_step or step % self.log_every_n_steps or self._start is None:
            return  # still accumulating, or not a logging step
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        for name, count in (("cells_per_s", self._cells), ("tokens_per_s", self._tokens)):
            pl_module.log(name, count / elapsed, on_step=True, on_epoch=False, sync_dist=True,
                          reduce_fx="sum", batch_size=1)  # fmt: skip
        self._reset(step)
