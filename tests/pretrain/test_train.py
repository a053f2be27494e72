from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import xtrimogene_sc as xtg
from xtrimogene_sc.datasets import synthetic_counts
from xtrimogene_sc.pretrain import PretrainConfig, pretrain
from xtrimogene_sc.pretrain._callbacks import AtomicCheckpointIO
from xtrimogene_sc.pretrain._train import find_resume_checkpoint

TINY_MODEL = {
    "preset": "tiny", "encoder_dim": 32, "encoder_heads": 2, "decoder_dim": 16,
    "decoder_heads": 2, "decoder_nb_features": 8, "bin_num": 16, "decoder_mode": "masked",
}  # fmt: skip


def write_corpus(folder: Path, n_files: int = 2, n_obs: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n_files):
            adata = synthetic_counts(n_obs=n_obs, n_vars=300, density=0.15, seed=10 + i)
            adata.write_h5ad(folder / f"part{i}.h5ad")
    return folder


def toml_config(corpus: Path, out: Path, *, num_workers: int = 0, **optim: object) -> str:
    model = "\n".join(
        f"{k} = {json.dumps(v)}" for k, v in TINY_MODEL.items()
    )  # JSON scalars are valid TOML scalars
    opt = {"batch_size": 16, "accumulate_grad_batches": 2, "lr": 1e-3, "warmup_steps": 2,
           "max_steps": 6, **optim}  # fmt: skip
    optim_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in opt.items())
    return f"""
[data]
source = "h5ad"
paths = ["{corpus}"]
min_genes = 1
shuffle_buffer = 32
num_workers = {num_workers}

[model]
{model}

[optim]
{optim_lines}

[run]
output_dir = "{out}"
checkpoint_every_n_steps = 2
keep_last_k = 2
log_every_n_steps = 1
accelerator = "cpu"
devices = 1
progress_bar = false
"""


def batch_digest(batch) -> str:
    h = hashlib.sha1()
    for t in (batch.crow, batch.pos, batch.value, batch.depth_s):
        h.update(t.cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class Recorder(pl.Callback):
    """Records (global step before the batch, batch digest) of every micro-batch."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append((trainer.global_step, batch_digest(batch)))


class KillAt(pl.Callback):
    """Simulates a crash right after optimiser step ``step``, before it is checkpointed."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("simulated kill")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def test_pretrain_from_config_file(corpus: Path, tmp_path: Path) -> None:
    cfg_path = tmp_path / "run.toml"
    cfg_path.write_text(toml_config(corpus, tmp_path / "out"))
    model_dir = pretrain(cfg_path)

    ckpts = sorted(p.name for p in (tmp_path / "out" / "checkpoints").iterdir())
    assert ckpts == ["last.ckpt", "step00000004.ckpt", "step00000006.ckpt"]  # keep_last_k = 2
    metrics = pd.read_csv(next((tmp_path / "out" / "logs" / "csv").glob("version_*/metrics.csv")))
    for column in ("train_loss", "cells_per_s", "tokens_per_s", "lr-AdamW/pg1"):
        assert column in metrics.columns
    loss = metrics["train_loss"].dropna()
    assert len(loss) == 6
    assert np.isfinite(loss).all()
    cells = metrics["cells_per_s"].dropna()
    assert len(cells) == 6
    assert (cells > 0).all()
    assert (metrics["tokens_per_s"].dropna() > 10 * cells.to_numpy()).all()  # ~45 genes per cell
    lr = metrics["lr-AdamW/pg1"].dropna().to_numpy()
    assert lr[0] == pytest.approx(5e-4)
    assert lr.max() == pytest.approx(1e-3)

    meta = json.loads((model_dir / "config.json").read_text())
    assert meta["pretraining"]["global_step"] == 6
    model = xtg.XTrimoGene.load(model_dir)
    assert model.config.encoder_dim == 32
    assert model.config.decoder_mode == "masked"
    adata = synthetic_counts(n_obs=20, n_vars=300, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        emb = model.get_latent_representation(adata, progress=False)
    assert emb.shape == (20, 4 * 32)
    assert np.isfinite(emb).all()
    # the export holds the trained weights, not a fresh initialisation
    trained = load_file(str(model_dir / "model.safetensors"))
    ckpt = torch.load(tmp_path / "out" / "checkpoints" / "last.ckpt", weights_only=True)
    for key, value in trained.items():
        assert torch.equal(value, ckpt["state_dict"][f"module.{key}"])
    # running a finished run again trains nothing and re-exports the same model
    recorder = Recorder()
    assert pretrain(cfg_path, callbacks=[recorder]) == model_dir
    assert recorder.seen == []
    again = load_file(str(model_dir / "model.safetensors"))
    assert all(torch.equal(again[k], v) for k, v in trained.items())


def test_resume_after_kill_matches_uninterrupted_run(corpus: Path, tmp_path: Path) -> None:
    """96 cells, batch 16, accumulation 2, two DataLoader workers: an epoch is 6 batches =
    3 steps; checkpoints every 2 steps. Kill 1 after step 3 resumes from step 2 (mid-epoch);
    kill 2 after step 7 resumes from step 6 (exactly at an epoch end)."""
    steps = 9
    ref_cfg = tmp_path / "ref.toml"
    ref_cfg.write_text(toml_config(corpus, tmp_path / "ref", max_steps=steps, num_workers=2))
    reference = Recorder()
    pretrain(ref_cfg, callbacks=[reference])
    assert len(reference.seen) == 2 * steps

    cfg = tmp_path / "run.toml"
    cfg.write_text(toml_config(corpus, tmp_path / "run", max_steps=steps, num_workers=2))
    parts = []
    for kill in (3, 7, None):
        recorder = Recorder()
        callbacks = [recorder] if kill is None else [recorder, KillAt(kill)]
        if kill is None:
            pretrain(cfg, callbacks=callbacks)
        else:
            with pytest.raises(RuntimeError, match="simulated kill"):
                pretrain(cfg, callbacks=callbacks)
        parts.append(recorder.seen)
    # (a) each restart continues from the last checkpoint's global step
    assert [p[0][0] for p in parts] == [0, 2, 6]
    assert find_resume_checkpoint(tmp_path / "run" / "checkpoints").name == "last.ckpt"
    # (b) the batches seen after each resume are those of the uninterrupted run at those steps
    ref = dict(enumerate(d for _, d in reference.seen))
    for part in parts:
        start = 2 * part[0][0]  # micro-batches before the resume step
        assert [d for _, d in part] == [ref[start + i] for i in range(len(part))]
    assert [s for s, _ in parts[2]] == [s for s, _ in reference.seen[12:]]
    # (c) CPU fp32 with per-batch reseeding: the final weights are identical
    a = load_file(str(tmp_path / "ref" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)


def test_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"unknown \[optim\] keys \['learning_rate'\]; valid keys"
    ):
        PretrainConfig.from_dict({"optim": {"learning_rate": 1e-3}})
    with pytest.raises(ValueError, match=r"unknown config sections \['trainer'\]"):
        PretrainConfig.from_dict({"trainer": {}})
    with pytest.raises(ValueError, match=r"unknown \[model\] keys \['width'\]"):
        PretrainConfig.from_dict({"model": {"preset": "tiny", "width": 3}})
    with pytest.raises(ValueError, match="unknown preset"):
        PretrainConfig.from_dict({"model": {"preset": "huge"}})
    with pytest.raises(ValueError, match="data.source must be one of"):
        PretrainConfig.from_dict({"data": {"source": "zarr"}})
    with pytest.raises(ValueError, match="optim.batch_size"):
        PretrainConfig.from_dict({"optim": {"batch_size": 0}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("x: 1")
    with pytest.raises(ValueError, match=r"\.toml or \.json"):
        PretrainConfig.from_file(bad)


def test_config_round_trip_json_and_relative_paths(tmp_path: Path) -> None:
    values = {
        "data": {"source": "preprocessed", "paths": ["corpus"], "num_workers": 1},
        "model": {"preset": "small", "decoder_mode": "masked"},
        "optim": {"batch_size": 4, "precision": "auto"},
        "rda": {"enabled": True, "p_full": 0.25},
        "run": {"output_dir": "out", "strategy": "ddp", "devices": [0, 1]},
    }
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(values))
    cfg = PretrainConfig.from_file(path)
    assert cfg.data.paths == (str(tmp_path / "corpus"),)
    assert cfg.run.checkpoint_dir == tmp_path / "out" / "checkpoints"
    assert cfg.run.model_dir == tmp_path / "out" / "model"
    assert cfg.model_config().decoder_mode == "masked"
    assert cfg.model_config().encoder_dim == 128
    assert cfg.optim.resolved_precision("cpu") == "32-true"
    assert PretrainConfig.from_dict(cfg.to_dict()) == cfg
    moved = cfg.updated(run={"output_dir": "/elsewhere"}, model={"encoder_depth": 2})
    assert moved.run.output_dir == "/elsewhere"
    assert moved.model_config().encoder_depth == 2
    assert moved.model_config().decoder_mode == "masked"


def test_checkpoint_writes_are_atomic(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, target)
    before = target.read_bytes()
    broken = {"state_dict": {"w": torch.zeros(3)}, "bad": lambda: None}  # fails mid-write
    with pytest.raises(Exception, match="(?i)pickle|lambda"):
        io.save_checkpoint(broken, target)
    assert target.read_bytes() == before  # the previous checkpoint survives intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind
    assert torch.load(target, weights_only=True)["global_step"] == 1
