"""Two CPU processes (gloo) launched by torchrun, exactly as a multi-GPU job is launched."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

import xtrimogene_sc as xtg
from xtrimogene_sc.data import GeneVocab
from xtrimogene_sc.data._tokenize import align_rows, tokenize_counts
from xtrimogene_sc.datasets import synthetic_counts
from xtrimogene_sc.module import XTrimoGeneModule
from xtrimogene_sc.pretrain import PretrainConfig, ReadDepthAugmentation

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path

    import lightning.pytorch as pl
    import torch

    from xtrimogene_sc.pretrain import pretrain


    def cell_hashes(cells):
        crow = cells.crow.tolist()
        return [
            hashlib.sha1(cells.pos[a:b].numpy().tobytes() + cells.value[a:b].numpy().tobytes())
            .hexdigest()[:16]
            for a, b in zip(crow[:-1], crow[1:])
        ]


    class CellLog(pl.Callback):
        def __init__(self, out):
            self.out, self.cells = out, []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.cells += [[trainer.current_epoch, h] for h in cell_hashes(batch)]

        def on_train_end(self, trainer, pl_module):
            rank = trainer.global_rank
            state = {k: v.detach().cpu().clone() for k, v in pl_module.module.state_dict().items()}
            torch.save(state, self.out / f"rank{rank}.pt")
            info = {"cells": self.cells, "world": trainer.world_size, "step": trainer.global_step}
            (self.out / f"rank{rank}.json").write_text(json.dumps(info))


    out = Path(sys.argv[2])
    pretrain(sys.argv[1], callbacks=[CellLog(out)])
    """
)


def _cell_hashes(cells) -> list[str]:
    crow = cells.crow.tolist()
    return [
        hashlib.sha1(
            cells.pos[a:b].numpy().tobytes() + cells.value[a:b].numpy().tobytes()
        ).hexdigest()[:16]
        for a, b in zip(crow[:-1], crow[1:], strict=True)
    ]


@pytest.mark.slow
def test_ddp_two_cpu_ranks_gloo(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    expected: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(2):
            adata = synthetic_counts(n_obs=48, n_vars=300, density=0.15, seed=20 + i)
            adata.write_h5ad(corpus / f"part{i}.h5ad")
            alignment = GeneVocab.default().align(adata)
            expected |= set(_cell_hashes(tokenize_counts(adata.X, alignment.var_to_position)))
    assert len(expected) == 96  # every cell is identifiable by its content
    config = {
        "data": {"paths": [str(corpus)], "min_genes": 1, "shuffle_buffer": 16, "num_workers": 0},
        "model": {"preset": "tiny", "encoder_dim": 32, "encoder_heads": 2, "decoder_dim": 16,
                  "decoder_heads": 2, "decoder_nb_features": 8, "bin_num": 16,
                  "decoder_mode": "masked"},
        "optim": {"batch_size": 8, "accumulate_grad_batches": 1, "lr": 1e-3, "warmup_steps": 1,
                  "max_steps": 6},
        "run": {"output_dir": str(tmp_path / "run"), "checkpoint_every_n_steps": 3,
                "log_every_n_steps": 1, "accelerator": "cpu", "devices": 2, "strategy": "ddp",
                "progress_bar": False},
    }  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    (tmp_path / "train.py").write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(tmp_path / "train.py"), str(tmp_path / "cfg.json"), str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]

    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(i["world"] == 2 and i["step"] == 6 for i in info)
    # 96 cells / 2 ranks / batch 8 = 6 batches per rank: one epoch, every cell exactly once
    seen = [[h for epoch, h in i["cells"] if epoch == 0] for i in info]
    assert len(seen[0]) == len(seen[1]) == 48
    assert not set(seen[0]) & set(seen[1])
    assert set(seen[0]) | set(seen[1]) == expected
    # DDP keeps the replicas identical
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    # and they did train: every weight matrix moved away from the (seeded) initialisation
    torch.manual_seed(0)  # pretrain seeds with optim.seed before building the module
    fresh = XTrimoGeneModule(PretrainConfig.from_dict(config).model_config())
    initial = {k: v for k, v in fresh.named_parameters() if v.ndim == 2}
    moved = [k for k, v in initial.items() if not torch.equal(v, states[0][k])]
    assert moved == list(initial)
    model = xtg.XTrimoGene.load(tmp_path / "run" / "model")
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, states[0][key]), key


@pytest.mark.parametrize("decoder_mode", ["masked", "full"])
def test_every_parameter_gets_a_gradient(decoder_mode: str, tiny_config) -> None:
    """DDP runs with find_unused_parameters=False: a parameter outside the loss would hang it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = synthetic_counts(n_obs=4, n_vars=300, seed=1)
        alignment = GeneVocab.default().align(adata)
    block = align_rows(adata.X, alignment.var_to_position)
    module = XTrimoGeneModule(tiny_config.replace(decoder_mode=decoder_mode))
    module(ReadDepthAugmentation(seed=0)(block)).loss.backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None]
    assert not missing
