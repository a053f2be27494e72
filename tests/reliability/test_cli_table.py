"""Bad inputs x every ``xtrimogene-sc`` subcommand: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from xtrimogene_sc.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _toml(tmp: Path, text: str) -> str:
    path = tmp / "run.toml"
    path.write_text(text)
    return str(path)


def _embed(env: dict[str, Any], tmp: Path, *extra: str, checkpoint: Any = None) -> list[str]:
    checkpoint = env["model_dir"] if checkpoint is None else checkpoint
    return ["embed", "--checkpoint", str(checkpoint), "--input", str(env["h5ad"]),
            "--output", str(tmp / "out.h5ad"), "--no-progress", *extra]  # fmt: skip


def _input_with_obsm(env: dict[str, Any], tmp: Path) -> str:
    """A copy of the input h5ad that already holds ``obsm['X_xtg']``."""
    import anndata as ad
    import numpy as np

    adata = ad.read_h5ad(env["h5ad"])
    adata.obsm["X_xtg"] = np.zeros((adata.n_obs, 2), dtype=np.float32)
    path = tmp / "embedded.h5ad"
    adata.write_h5ad(path)
    return str(path)


# (id, argv from (env, tmp_path), fragment of the stderr line, issue item)
CASES = [
    ("no-command", lambda e, t: [], "the following arguments are required: COMMAND", "C8"),
    ("unknown-command", lambda e, t: ["fit"], "invalid choice: 'fit'", "C8"),
    ("demo-epochs-0", lambda e, t: ["demo", "--epochs", "0"], "expected an integer >= 1", "C8 / W4"),
    ("demo-epochs-text", lambda e, t: ["demo", "--epochs", "ten"], "got 'ten'", "C8"),
    ("demo-out-is-a-file", lambda e, t: ["demo", "--epochs", "1", "--out", str(e["h5ad"])],
     "File exists", "C8 wrong path"),
    ("embed-missing-checkpoint", lambda e, t: _embed(e, t, checkpoint=t / "nope"),
     "no such model directory", "C9"),
    ("embed-checkpoint-not-a-checkpoint", lambda e, t: _embed(e, t, checkpoint=e["not_hdf5"]),
     "is not a readable PyTorch checkpoint", "C9 (was 'KeyError: 101')"),
    ("embed-input-not-hdf5", lambda e, t: [*_embed(e, t)[:4], str(e["not_hdf5"]), *_embed(e, t)[5:]],
     "is not a readable .h5ad file", "C9"),
    ("embed-output-exists", lambda e, t: [*_embed(e, t)[:6], str(e["not_hdf5"]), "--no-progress"],
     "--overwrite", "held"),
    ("embed-output-folder-missing", lambda e, t: [*_embed(e, t)[:6], str(t / "no" / "out.h5ad"), "--no-progress"],
     "the folder", "30: output folder checked before embedding"),
    ("embed-genes-folder-missing", lambda e, t: _embed(e, t, "--genes", str(t / "no" / "genes.h5")),
     "genes.h5: the folder", "30: --genes path checked before embedding"),
    ("embed-obsm-key-exists", lambda e, t: [*_embed(e, t)[:4], _input_with_obsm(e, t), "--output", str(t / "embedded.h5ad"), "--no-progress"],
     "already holds obsm['X_xtg']; pass overwrite=True (--overwrite)", "30: obsm key kept"),
    ("embed-batch-size-0", lambda e, t: _embed(e, t, "--batch-size", "0"),
     "argument --batch-size: expected an integer >= 1", "C8"),
    ("embed-missing-layer", lambda e, t: _embed(e, t, "--layer", "spliced"),
     "is not a layer of this AnnData", "C4"),
    ("embed-bad-depth-code", lambda e, t: _embed(e, t, "--tgthighres", "x4"),
     "target-depth code 'x4'", "held"),
    ("preprocess-not-hdf5", lambda e, t: ["preprocess", str(e["not_hdf5"]), "--output-dir", str(t / "c")],
     "cannot be preprocessed", "C3"),
    ("preprocess-empty-folder", lambda e, t: ["preprocess", str(t), "--output-dir", str(t / "c")],
     "no .h5ad files in this folder", "C8"),
    ("preprocess-missing-file", lambda e, t: ["preprocess", str(t / "x.h5ad"), "--output-dir", str(t / "c")],
     "h5ad files not found", "C8"),
    ("preprocess-cells-per-shard-0", lambda e, t: ["preprocess", str(e["h5ad"]), "--output-dir", str(t / "c"),
                                                    "--cells-per-shard", "0"],
     "expected an integer >= 1", "C8"),
    ("pretrain-missing-config", lambda e, t: ["pretrain", "--config", str(t / "run.toml")],
     "does not exist", "C8"),
    ("pretrain-config-not-toml", lambda e, t: ["pretrain", "--config", _toml(t, "[optim\n")],
     "is not valid TOML", "C8 (now names the file)"),
    ("pretrain-config-wrong-type", lambda e, t: ["pretrain", "--config", _toml(t, '[optim]\nlr = "fast"\n')],
     "optim.lr must be a finite number", "C8 (was a TypeError traceback)"),
    ("pretrain-config-unknown-key", lambda e, t: ["pretrain", "--config", _toml(t, "[optim]\nlearning_rate = 1\n")],
     "unknown [optim] keys ['learning_rate']", "held"),
    ("pretrain-config-missing-data", lambda e, t: ["pretrain", "--config", _toml(t, '[data]\npaths = ["none.h5ad"]\n[model]\npreset = "tiny"\n[run]\naccelerator = "cpu"\n')],
     "h5ad files not found", "C8"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "fragment"), [pytest.param(c[1], c[2], id=c[0]) for c in CASES])
def test_cli_reports_user_errors_in_one_line(
    argv: Any, fragment: str, env: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = argv(env, tmp_path)
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse usage errors exit from inside parse_args
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("xtrimogene-sc"), err
    assert fragment in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", [[], ["demo"], ["embed"], ["preprocess"], ["pretrain"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: xtrimogene-sc")


def test_installed_command_prints_one_line_and_exits_2(
    env: dict[str, Any], tmp_path: Path
) -> None:
    """Outside pytest's capture: the real stderr of ``python -m xtrimogene_sc.cli``: the error
    is one line, the last one (INFO log lines about the inputs may precede it)."""
    pythonpath = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "xtrimogene_sc.cli", "preprocess", str(env["not_hdf5"]),
         str(env["h5ad"]), "--output-dir", str(tmp_path / "c"), "--no-progress"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()  # progress/info log lines may come first
    errors = [line for line in lines if line.startswith("xtrimogene-sc preprocess:")]
    assert errors == lines[-1:], proc.stderr
    assert errors[0].startswith("xtrimogene-sc preprocess: 1 of 2 input files cannot be")
    assert "notes.h5ad" in errors[0]
    assert not (tmp_path / "c" / "manifest.json").exists()  # nothing processed
