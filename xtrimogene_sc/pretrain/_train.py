"""``pretrain(config)``: streaming masked-regression pretraining on Lightning (1 GPU to many nodes).

Pieces: a :class:`StreamingDataModule` over a cell source (each rank reads a disjoint share, so
Lightning's distributed sampler is off), :class:`PretrainPlan` (the package's training plan with
per-step logging and checkpoint metadata), periodic atomic checkpoints with automatic resume from
``output_dir/checkpoints/last.ckpt``, CSV (+ TensorBoard) logs with throughput, and a final
export to a model directory that :meth:`XTrimoGene.load` reads.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader

from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.data._loading import identity_collate
from xtrimogene_sc.module._module import XTrimoGeneModule
from xtrimogene_sc.pretrain._callbacks import (
    AtomicCheckpointIO,
    FinalCheckpoint,
    StreamPosition,
    ThroughputMonitor,
)
from xtrimogene_sc.pretrain._config import DataConfig, PretrainConfig
from xtrimogene_sc.pretrain._export import CHECKPOINT_META_KEY, checkpoint_meta, export_pretrained
from xtrimogene_sc.pretrain._rda import ReadDepthAugmentation
from xtrimogene_sc.pretrain._resume import RESUME_KEY, check_resume, resume_settings
from xtrimogene_sc.pretrain._soma import SomaSource
from xtrimogene_sc.pretrain._sources import H5adDirectorySource, PreprocessedSource
from xtrimogene_sc.pretrain._stream import StreamingCellDataset
from xtrimogene_sc.train._plan import LIGHTNING_NOTICES, XTrimoGeneTrainingPlan

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"
_MAX_PIECE = 65536


class PretrainPlan(XTrimoGeneTrainingPlan):
    """Training plan for streaming pretraining: step-level loss, metadata in checkpoints.

    ``train_loss`` is the masked-value MSE of rank 0's last micro-batch of each logged step (no
    cross-rank sync, which would cost a collective per step).
    """

    def __init__(self, module: XTrimoGeneModule, *, meta: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(module, **kwargs)
        self.meta = meta

    def training_step(self, batch: SparseCells, batch_idx: int) -> Any:
        out = self.module(batch)
        self.log("train_loss", out.loss.detach().float(), on_step=True, on_epoch=False,
                 prog_bar=True, batch_size=batch.n_cells)  # fmt: skip
        return out.loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_META_KEY] = self.meta


class StreamingDataModule(pl.LightningDataModule):
    """Serve minibatches from a cell source through ``StreamingCellDataset``.

    Each rank streams its own share; the data epoch and the batches to skip come from a
    :class:`StreamPosition` callback, so a resumed run continues the data order exactly.

    Parameters
    ----------
    source
        A cell source (``n_cells``, ``shard_ids()``, ``shard_size(id)``, ``read_shard(id)``).
    position
        The run's :class:`StreamPosition` callback.
    batch_size, shuffle_buffer, seed, min_genes, transform
        Passed to ``StreamingCellDataset``.
    num_workers
        DataLoader workers (not persistent: each epoch re-sends the dataset's position).
    """

    def __init__(
        self,
        source: Any,
        *,
        position: StreamPosition,
        batch_size: int,
        shuffle_buffer: int = 16384,
        seed: int = 0,
        min_genes: int = 0,
        transform: Any = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.source = source
        self.position = position
        self.dataset_kwargs = {
            "batch_size": batch_size, "shuffle_buffer": shuffle_buffer, "seed": seed,
            "transform": transform, "min_genes": min_genes,
        }  # fmt: skip
        self.num_workers = num_workers
        self.dataset: Any = None
        self._at: tuple[int, int] | None = None

    def setup(self, stage: str) -> None:
        if self.dataset is not None:
            return
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        # Enough shard pieces for every (rank, worker) consumer, even on a small corpus.
        consumers = world * max(self.num_workers, 1)
        piece_size = min(_MAX_PIECE, max(1, int(self.source.n_cells) // (4 * consumers)))
        self.dataset = StreamingCellDataset(
            self.source, rank=rank, world_size=world, num_workers=self.num_workers,
            piece_size=piece_size, **self.dataset_kwargs,
        )  # fmt: skip

    def seek(self, epoch: int, start_batch: int) -> None:
        """Point the dataset at batch ``start_batch`` of data epoch ``epoch``."""
        if self._at == (epoch, start_batch):
            return
        self.dataset.set_epoch(epoch)
        self.dataset.set_start_batch(start_batch)
        self._at = (epoch, start_batch)
        if start_batch:
            logger.info("resuming the data stream at epoch %d, batch %d", epoch, start_batch)

    def train_dataloader(self) -> DataLoader:
        self.seek(*self.position.start_position())
        return DataLoader(
            self.dataset,
            batch_size=None,
            collate_fn=identity_collate,
            num_workers=self.num_workers,
            persistent_workers=False,
            prefetch_factor=4 if self.num_workers else None,
        )


def build_source(data: DataConfig) -> Any:
    """The cell source described by the ``[data]`` section."""
    if not data.paths:
        msg = "data.paths is empty: give the .h5ad files/directory, preprocessed directory or URI"
        raise ValueError(msg)
    options = dict(data.source_options)
    if data.source == "h5ad":
        paths = data.paths[0] if len(data.paths) == 1 else list(data.paths)
        return H5adDirectorySource(
            paths, layer=data.layer, gene_symbols_key=data.gene_symbols_key, **options
        )
    if data.source == "preprocessed":
        return PreprocessedSource(data.paths[0], **options)
    if data.layer is not None:
        options.setdefault("layer", data.layer)
    if data.gene_symbols_key is not None:
        options.setdefault("gene_symbols_column", data.gene_symbols_key)
    return SomaSource(data.paths[0], **options)


def find_resume_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """``last.ckpt`` if present, else the highest-step ``step*.ckpt``, else ``None``."""
    folder = Path(checkpoint_dir)
    if (folder / LAST_CHECKPOINT).is_file():
        return folder / LAST_CHECKPOINT
    steps = [
        (int(m.group(1)), p)
        for p in folder.glob("step*.ckpt")
        if (m := re.fullmatch(r"step(\d+)\.ckpt", p.name))
    ]
    return max(steps)[1] if steps else None


def pretrain(
    config: PretrainConfig | str | Path,
    *,
    source: Any = None,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Pretrain an xTrimoGene model on a streamed single-cell corpus and export it.

    Parameters
    ----------
    config
        A :class:`PretrainConfig` or the path of a TOML/JSON config file.
    source
        A cell source object to use instead of the one ``config.data`` describes.
    callbacks
        Extra Lightning callbacks.

    Returns
    -------
    The exported model directory (``run.export_dir``, default ``output_dir/model``), loadable
    with :meth:`XTrimoGene.load`.
    """
    if not isinstance(config, PretrainConfig):
        config = PretrainConfig.from_file(config)
    optim, run = config.optim, config.run
    model_config = config.model_config()
    if config.rda.enabled and not model_config.use_depth_tokens:
        msg = "rda.enabled needs the depth tokens T and S: set use_depth_tokens = true in [model]"
        raise ValueError(msg)
    pl.seed_everything(optim.seed, workers=True, verbose=False)
    plan = PretrainPlan(
        XTrimoGeneModule(model_config),
        meta=checkpoint_meta(model_config, pretrain_config=config.to_dict()),
        lr=optim.lr,
        weight_decay=optim.weight_decay,
        warmup_steps=optim.warmup_steps,
        total_steps=optim.max_steps,
        min_lr_ratio=optim.min_lr_ratio,
    )
    position = StreamPosition(seed=optim.seed)
    transform = None
    if config.rda.enabled:
        rda = config.rda
        transform = ReadDepthAugmentation(
            p_full=rda.p_full, min_fraction=rda.min_fraction, max_fraction=rda.max_fraction,
            min_counts=rda.min_counts, seed=optim.seed,
        )  # fmt: skip
    datamodule = StreamingDataModule(
        source if source is not None else build_source(config.data),
        position=position,
        batch_size=optim.batch_size,
        shuffle_buffer=config.data.shuffle_buffer,
        seed=optim.seed,
        min_genes=config.data.min_genes,
        transform=transform,
        num_workers=config.data.num_workers,
    )
    trainer = _build_trainer(config, [position, *callbacks])
    plan.meta[RESUME_KEY] = resume_settings(config, datamodule.source, trainer.world_size)
    resume_from = find_resume_checkpoint(run.checkpoint_dir) if run.resume else None
    if resume_from is not None:
        check_resume(resume_from, plan.meta[RESUME_KEY])
        logger.info("resuming from %s", resume_from)
    elif not run.resume and find_resume_checkpoint(run.checkpoint_dir) is not None:
        msg = f"resume is off: checkpoints in {run.checkpoint_dir} will be overwritten"
        warnings.warn(msg, UserWarning, stacklevel=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        # The data module handles both: exact resume mid-epoch, and a sharded __len__.
        warnings.filterwarnings("ignore", ".*not resumable.*")
        warnings.filterwarnings("ignore", ".*`IterableDataset` has `__len__` defined.*")
        warnings.filterwarnings("ignore", ".*validation_step` but have no `val_dataloader.*")
        warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")
        for pattern in LIGHTNING_NOTICES:
            warnings.filterwarnings("ignore", pattern)
        trainer.fit(plan, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    final = find_resume_checkpoint(run.checkpoint_dir)  # last.ckpt, written at the last step
    if trainer.is_global_zero and final is not None:
        export_pretrained(final, run.model_dir, config=model_config)
    trainer.strategy.barrier("export")
    return run.model_dir


def _build_trainer(config: PretrainConfig, callbacks: list[Callback]) -> pl.Trainer:
    optim, run = config.optim, config.run
    out = Path(run.output_dir)
    loggers: list[Logger] = [CSVLogger(out / "logs", name="csv")]
    if find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(out / "logs", name="tensorboard"))
    checkpoint = ModelCheckpoint(
        dirpath=run.checkpoint_dir,
        filename="step{step:08d}",
        auto_insert_metric_name=False,
        every_n_train_steps=run.checkpoint_every_n_steps,
        save_top_k=run.keep_last_k,
        monitor="step",
        mode="max",
        save_last=True,
    )
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        # Lightning's SIGUSR1 checkpoint can land mid-step; resume from last.ckpt instead.
        plugins.append(SLURMEnvironment(auto_requeue=False))
    strategy: Any = DDPStrategy(find_unused_parameters=False) if run.strategy == "ddp" else "auto"
    return pl.Trainer(
        accelerator=run.accelerator,
        devices=run.devices,
        num_nodes=run.num_nodes,
        strategy=strategy,
        precision=optim.resolved_precision(run.accelerator),
        max_steps=optim.max_steps,
        max_epochs=-1,
        accumulate_grad_batches=optim.accumulate_grad_batches,
        gradient_clip_val=optim.gradient_clip_val,
        log_every_n_steps=run.log_every_n_steps,
        logger=loggers,
        callbacks=[
            *callbacks,
            ThroughputMonitor(log_every_n_steps=run.log_every_n_steps),
            FinalCheckpoint(
                run.checkpoint_dir / LAST_CHECKPOINT, every_n_steps=run.checkpoint_every_n_steps
            ),
            LearningRateMonitor(logging_interval="step"),
            checkpoint,
        ],
        plugins=plugins,
        use_distributed_sampler=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=run.progress_bar,
        enable_model_summary=False,
        default_root_dir=out,
    )
