from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch

import xtrimogene_sc as xtg
from xtrimogene_sc.datasets import synthetic_counts
from xtrimogene_sc.module import XTrimoGeneConfig, XTrimoGeneModule
from xtrimogene_sc.pretrain import (
    PretrainConfig,
    PretrainPlan,
    export_pretrained,
    pretrain,
    read_lightning_checkpoint,
)

TINY = {
    "encoder_dim": 32, "encoder_heads": 2, "decoder_dim": 16,
    "decoder_heads": 2, "decoder_nb_features": 8, "bin_num": 16, "decoder_mode": "masked",
}  # fmt: skip


class WritesAFile:
    """Unpickling this object would create ``path``: proof that a pickle was executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synthetic_counts(n_obs=64, n_vars=300, seed=5).write_h5ad(root / "cells.h5ad")
    config = PretrainConfig.from_dict(
        {
            "data": {"paths": ["cells.h5ad"], "min_genes": 1, "num_workers": 0},
            "model": {"preset": "tiny", **TINY},
            "optim": {"batch_size": 16, "accumulate_grad_batches": 1, "max_steps": 2},
            "run": {
                "output_dir": "run",
                "accelerator": "cpu",
                "devices": 1,
                "checkpoint_every_n_steps": 1,
                "progress_bar": False,
            },
        },  # fmt: skip
        base_dir=root,
    )
    torch.set_num_threads(1)
    pretrain(config)
    return root / "run"


def test_export_from_checkpoint_module_and_directory(run_dir: Path, tmp_path: Path) -> None:
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    state, config, extra = read_lightning_checkpoint(ckpt)
    assert config == XTrimoGeneConfig.preset("tiny", **TINY)
    assert extra["global_step"] == 2
    out = export_pretrained(ckpt, tmp_path / "from_ckpt")  # config read from the checkpoint
    model = xtg.XTrimoGene.from_pretrained(out)
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, state[key])
    assert json.loads((out / "config.json").read_text())["pretraining"]["global_step"] == 2
    # a module, a plan and an existing model directory export the same weights
    module = XTrimoGeneModule(config)
    module.load_state_dict(state)
    plan = PretrainPlan(module, meta={})
    for source in (module, plan, out):
        again = xtg.XTrimoGene.load(export_pretrained(source, tmp_path / "again"))
        for key, value in again.module.state_dict().items():
            assert torch.equal(value, state[key])
    with pytest.raises(FileExistsError):
        export_pretrained(module, tmp_path / "again", overwrite=False)


def test_export_refuses_a_config_of_another_shape(run_dir: Path, tmp_path: Path) -> None:
    wider = XTrimoGeneConfig.preset("tiny", **{**TINY, "encoder_dim": 64})
    with pytest.raises(ValueError, match=r"does not fit this model.*shape mismatches"):
        export_pretrained(run_dir / "checkpoints" / "last.ckpt", tmp_path / "m", config=wider)
    assert not (tmp_path / "m").exists()


def test_loading_refuses_another_vocabulary(run_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(run_dir / "model", model_dir)
    vocab = model_dir / "vocab.tsv"
    lines = vocab.read_text().splitlines(keepends=True)
    lines[1], lines[2] = lines[2].split("\t")[0] + "\t0\n", lines[1].split("\t")[0] + "\t1\n"
    vocab.write_text("".join(lines))  # two genes swapped: positions would be misread
    with pytest.raises(ValueError, match="gene vocabulary .* differs"):
        xtg.XTrimoGene.load(model_dir)
    with pytest.raises(ValueError, match="gene vocabulary .* differs"):
        export_pretrained(model_dir, tmp_path / "re-export")


def test_export_refuses_a_checkpoint_of_another_vocabulary(run_dir: Path, tmp_path: Path) -> None:
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["xtrimogene_sc"]["vocab_sha256"] = "0" * 64
    torch.save(ckpt, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="another gene vocabulary"):
        export_pretrained(tmp_path / "other.ckpt", tmp_path / "m")


def test_loading_refuses_a_config_of_another_shape(run_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(run_dir / "model", model_dir)
    meta = json.loads((model_dir / "config.json").read_text())
    meta["config"]["decoder_dim"] = 32
    (model_dir / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"config.json was modified after the model was saved"):
        xtg.XTrimoGene.load(model_dir)
    # without checksums (format 1) the shapes still do not fit, and loading says so
    (model_dir / "config.json").write_text(json.dumps({**meta, "format_version": 1}))
    with (
        pytest.raises(ValueError, match=r"does not fit this model.*decoder"),
        pytest.warns(UserWarning, match="without checksums"),
    ):
        xtg.XTrimoGene.load(model_dir)


def test_no_pickle_is_executed(run_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    model_dir = tmp_path / "model"
    shutil.copytree(run_dir / "model", model_dir)
    with (model_dir / "model.safetensors").open("wb") as fh:
        pickle.dump({"weights": WritesAFile(marker)}, fh)
    with pytest.raises(Exception, match="(?i)header|deserializ|safetensor"):
        xtg.XTrimoGene.load(model_dir)
    assert not marker.exists()
    torch.save({"state_dict": {}, "extra": WritesAFile(marker)}, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="safe loading refused"):
        export_pretrained(tmp_path / "evil.ckpt", tmp_path / "m")
    assert not marker.exists()
