from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pytest

import xtrimogene_sc as xtg
from xtrimogene_sc._cli_pretrain import add_subcommands
from xtrimogene_sc.datasets import synthetic_counts
from xtrimogene_sc.pretrain import PretrainConfig, pretrain

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pretrain_config.toml"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xtrimogene-sc")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_parser_options() -> None:
    parser = make_parser()
    args = parser.parse_args(
        ["pretrain", "--config", "run.toml", "--no-resume", "--output-dir", "o"]
    )
    assert callable(args.func)
    assert args.config == Path("run.toml")
    assert args.resume is False
    assert args.output_dir == Path("o")
    assert parser.parse_args(["pretrain", "--config", "c.json"]).resume is None
    assert parser.parse_args(["pretrain", "--config", "c.json", "--resume"]).resume is True
    args = parser.parse_args(
        ["preprocess", "a.h5ad", "b.h5ad", "--output-dir", "out", "--min-genes", "5",
         "--layer", "counts", "--gene-symbols-key", "symbol"]
    )  # fmt: skip
    assert args.inputs == [Path("a.h5ad"), Path("b.h5ad")]
    assert (args.min_genes, args.layer, args.gene_symbols_key) == (5, "counts", "symbol")
    assert parser.parse_args(["preprocess", "x.h5ad", "--output-dir", "o"]).min_genes == 200
    with pytest.raises(SystemExit):
        parser.parse_args(["pretrain"])  # --config is required
    with pytest.raises(SystemExit):
        parser.parse_args(["preprocess", "x.h5ad"])  # --output-dir is required


def test_pretrain_command_reports_config_errors(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[optim]\nlearning_rate = 0.1\n")
    args = make_parser().parse_args(["pretrain", "--config", str(cfg)])
    assert args.func(args) == 2
    assert "unknown [optim] keys ['learning_rate']" in capsys.readouterr().err


def test_preprocess_then_rda_pretrain_from_the_command_line(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(2):
            synthetic_counts(n_obs=40, n_vars=300, seed=30 + i).write_h5ad(tmp_path / f"{i}.h5ad")
    parser = make_parser()
    args = parser.parse_args(
        ["preprocess", str(tmp_path), "--output-dir", str(tmp_path / "corpus"),
         "--min-genes", "5", "--no-progress"]
    )  # fmt: skip
    assert args.func(args) == 0
    assert (tmp_path / "corpus" / "manifest.json").is_file()
    config = {
        "data": {"source": "preprocessed", "paths": ["corpus"], "min_genes": 5, "num_workers": 0},
        "model": {"preset": "tiny", "encoder_dim": 32, "encoder_heads": 2, "decoder_dim": 16,
                  "decoder_heads": 2, "decoder_nb_features": 8, "bin_num": 16,
                  "decoder_mode": "masked"},
        "optim": {"batch_size": 16, "accumulate_grad_batches": 1, "max_steps": 3},
        "rda": {"enabled": True, "p_full": 0.5},
        "run": {"output_dir": "ignored", "accelerator": "cpu", "devices": 1,
                "log_every_n_steps": 1, "progress_bar": False},
    }  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    out = tmp_path / "cli_out"
    args = parser.parse_args(["pretrain", "--config", str(tmp_path / "cfg.json"), "--output-dir", str(out)])  # fmt: skip
    assert args.func(args) == 0
    assert not (tmp_path / "ignored").exists()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    model = xtg.XTrimoGene.load(out / "model")
    assert model.config.use_depth_tokens


def test_example_config_is_valid_and_runs(tmp_path: Path) -> None:
    config = PretrainConfig.from_file(EXAMPLE)
    assert config.data.paths == (str(EXAMPLE.parent / "pbmc68k_counts.h5ad"),)
    assert config.rda.enabled
    assert config.model_config().decoder_mode == "masked"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xtg.datasets.pbmc68k_counts().write_h5ad(tmp_path / "pbmc.h5ad")
    short = config.updated(
        data={"paths": (str(tmp_path / "pbmc.h5ad"),)},
        optim={"max_steps": 2},
        run={"output_dir": str(tmp_path / "run"), "accelerator": "cpu", "progress_bar": False},
    )
    model = xtg.XTrimoGene.load(pretrain(short))
    assert model.config.encoder_dim == 64  # the tiny preset
