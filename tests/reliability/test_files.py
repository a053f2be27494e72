"""No lost file, no silent wrong result from files: saving, loading, preprocessing, resuming."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reliability_support import TINY, cells, quiet, tiny_model, write_h5ad_files

import xtrimogene_sc as xtg
from xtrimogene_sc.base import _atomic as model_io
from xtrimogene_sc.model import CheckpointError
from xtrimogene_sc.pretrain import PretrainConfig, preprocess_h5ad, pretrain
from xtrimogene_sc.pretrain._manifest import read_manifest


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------ saving
def test_overwrite_replaces_only_the_model_files(env: dict[str, Any], tmp_path: Path) -> None:
    results = tmp_path / "results"
    env["model"].save(results)
    (results / "analysis.h5ad").write_text("the user's only copy")
    (results / "notes").mkdir()
    other = tiny_model(encoder_dim=16)
    other.save(results, overwrite=True)
    assert _entries(results) == [
        "analysis.h5ad", "config.json", "model.safetensors", "notes", "vocab.tsv",
    ]  # fmt: skip
    assert (results / "analysis.h5ad").read_text() == "the user's only copy"
    assert xtg.XTrimoGene.load(results).config.encoder_dim == 16
    assert _entries(tmp_path) == ["results"]  # no hidden .old-* / .tmp-* left anywhere


def test_overwrite_removes_files_of_the_previous_save_only(tmp_path: Path) -> None:
    adata = cells()
    quiet(xtg.XTrimoGene.setup_anndata, adata)
    model = tiny_model(adata)
    model.save(tmp_path / "m", save_anndata=True)
    assert (tmp_path / "m" / "adata.h5ad").is_file()
    model.save(tmp_path / "m", overwrite=True)  # without the AnnData this time
    assert _entries(tmp_path / "m") == ["config.json", "model.safetensors", "vocab.tsv"]


def test_save_into_an_empty_folder_needs_no_overwrite(env: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    env["model"].save(tmp_path / "empty")
    assert model_io.holds_model(tmp_path / "empty")


def test_a_crash_between_file_renames_is_refused_on_load(
    env: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overwriting renames file by file, config.json last: a crash in between leaves new weights
    with the old config.json, whose checksums refuse them instead of loading a mix."""
    env["model"].save(tmp_path / "m")
    (tmp_path / "m" / "keep.txt").write_text("mine")
    real_replace = os.replace

    def die_after_weights(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        if Path(dst).name == "model.safetensors":
            raise KeyboardInterrupt

    monkeypatch.setattr(model_io.os, "replace", die_after_weights)
    with pytest.raises(KeyboardInterrupt):
        tiny_model(encoder_dim=16).save(tmp_path / "m", overwrite=True)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="model.safetensors is corrupted or was modified"):
        xtg.XTrimoGene.load(tmp_path / "m")
    assert (tmp_path / "m" / "keep.txt").read_text() == "mine"
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".")]


def test_checksums_cover_the_config_but_not_its_formatting(
    env: dict[str, Any], tmp_path: Path
) -> None:
    shutil.copytree(env["model_dir"], tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    meta = json.loads(config.read_text())
    config.write_text(json.dumps(meta, indent=4, sort_keys=True))  # reformatting is harmless
    xtg.XTrimoGene.load(tmp_path / "m")
    meta["is_trained"] = not meta["is_trained"]
    config.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="config.json was modified"):
        xtg.XTrimoGene.load(tmp_path / "m")


def test_directories_saved_before_checksums_still_load(
    env: dict[str, Any], tmp_path: Path
) -> None:
    shutil.copytree(env["model_dir"], tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    meta = json.loads(config.read_text())
    del meta["integrity"], meta["files"]
    config.write_text(json.dumps({**meta, "format_version": 1}))
    with pytest.warns(UserWarning, match="without checksums, so it is loaded unverified"):
        old = xtg.XTrimoGene.load(tmp_path / "m")
    for key, value in env["model"].module.state_dict().items():
        assert old.module.state_dict()[key].equal(value)


# ------------------------------------------------------------------------------------ loading
def test_loaded_model_follows_the_registration_of_the_new_anndata(env: dict[str, Any]) -> None:
    """The counts are in a layer and the symbols in a var column, both given to setup_anndata;
    X holds other values. A model loaded without that AnnData must still use the layer."""
    reference = cells(seed=3)
    expected = quiet(env["model"].get_latent_representation, reference, progress=False)
    adata = reference.copy()
    adata.X = adata.X * 3  # still integers: only the registration tells them apart
    adata.var["symbol"] = adata.var_names
    adata.var_names = [f"ENSG{i:011d}" for i in range(adata.n_vars)]
    quiet(xtg.XTrimoGene.setup_anndata, adata, layer="counts", gene_symbols_key="symbol")
    loaded = xtg.XTrimoGene.load(env["model_dir"])
    for model in (loaded, xtg.XTrimoGene.load(env["model_dir"], adata=adata)):
        got = quiet(model.get_latent_representation, adata, progress=False)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ preprocessing
def _run(inputs: Any, out: Path, **kwargs: Any) -> Path:
    return preprocess_h5ad(inputs, out, min_genes=5, cells_per_shard=25, progress=False, **kwargs)


def test_preprocess_knows_inputs_by_content(tmp_path: Path) -> None:
    folder = write_h5ad_files(tmp_path / "in")
    out = _run(folder, tmp_path / "corpus")
    n_cells = read_manifest(out)["n_cells"]
    moved = tmp_path / "moved"
    shutil.move(folder, moved)
    _run(moved, out)  # the folder moved: nothing is processed again
    manifest = read_manifest(out)
    assert manifest["n_cells"] == n_cells
    assert sorted(manifest["inputs"]) == sorted(str(p.resolve()) for p in moved.glob("*.h5ad"))
    assert {s["source"] for s in manifest["shards"]} == set(manifest["inputs"])
    shutil.copy(moved / "part0.h5ad", tmp_path / "copy.h5ad")
    with pytest.warns(UserWarning, match=r"copy\.h5ad has the same content as .*part0\.h5ad"):
        _run([*sorted(moved.glob("*.h5ad")), tmp_path / "copy.h5ad"], out)
    assert read_manifest(out)["n_cells"] == n_cells
    fresh = tmp_path / "fresh"
    with pytest.warns(UserWarning, match="is also an input of this run"):
        _run([moved / "part1.h5ad", tmp_path / "copy.h5ad", moved / "part0.h5ad"], fresh)
    assert read_manifest(fresh)["n_cells"] == n_cells


def test_preprocess_names_every_bad_input_and_skips_them_only_when_asked(tmp_path: Path) -> None:
    folder = write_h5ad_files(tmp_path / "in")
    (folder / "notes.h5ad").write_text("not HDF5")
    data = (folder / "part1.h5ad").read_bytes()
    (folder / "truncated.h5ad").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="2 of 4 input files cannot be preprocessed") as info:
        _run(folder, tmp_path / "corpus")
    assert "notes.h5ad" in str(info.value)
    assert "truncated.h5ad" in str(info.value)
    assert not (tmp_path / "corpus" / "manifest.json").exists()
    with pytest.warns(UserWarning, match="skipping 2 of 4 input files"):
        out = _run(folder, tmp_path / "corpus", skip_bad=True)
    manifest = read_manifest(out)
    assert manifest["complete"]
    assert sorted(Path(p).name for p in manifest["inputs"]) == ["part0.h5ad", "part1.h5ad"]
    assert sorted(Path(p).name for p in manifest["skipped"]) == ["notes.h5ad", "truncated.h5ad"]


def test_preprocess_skip_bad_also_skips_files_with_bad_values(tmp_path: Path) -> None:
    folder = write_h5ad_files(tmp_path / "in")
    lognorm = cells(seed=9)
    lognorm.X.data = np.log1p(lognorm.X.data)
    quiet(lognorm.write_h5ad, folder / "lognorm.h5ad")
    with pytest.warns(UserWarning, match=r"skipping .*lognorm\.h5ad.*non-integer"):
        out = _run(folder, tmp_path / "corpus", skip_bad=True)
    assert len(read_manifest(out)["inputs"]) == 2


# ---------------------------------------------------------------------------------- resuming
def _pretrain_config(corpus: Path, out: Path, **optim: Any) -> PretrainConfig:
    return PretrainConfig.from_dict({
        "data": {"source": "h5ad", "paths": [str(corpus)], "min_genes": 1, "num_workers": 0,
                 "shuffle_buffer": 16},
        "model": {"preset": "tiny", **TINY},
        "optim": {"batch_size": 8, "accumulate_grad_batches": 1, "warmup_steps": 1,
                  "max_steps": 2, **optim},
        "run": {"output_dir": str(out), "accelerator": "cpu", "devices": 1,
                "checkpoint_every_n_steps": 1, "progress_bar": False},
    })  # fmt: skip


def test_resume_refuses_a_changed_setting_by_name(tmp_path: Path) -> None:
    corpus = write_h5ad_files(tmp_path / "corpus", n_files=1, n_obs=24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pretrain(_pretrain_config(corpus, tmp_path / "run"))
        before = (tmp_path / "run" / "checkpoints" / "last.ckpt").read_bytes()
        with pytest.raises(ValueError, match=r"optim\.batch_size was 8, now 4"):
            pretrain(_pretrain_config(corpus, tmp_path / "run", batch_size=4, max_steps=3))
        with pytest.raises(ValueError, match=r"optim\.seed was 0, now 1"):
            pretrain(_pretrain_config(corpus, tmp_path / "run", seed=1, max_steps=3))
        assert (tmp_path / "run" / "checkpoints" / "last.ckpt").read_bytes() == before
        pretrain(_pretrain_config(corpus, tmp_path / "run", max_steps=3))  # max_steps may grow
    assert (
        json.loads((tmp_path / "run" / "model" / "config.json").read_text())["pretraining"][
            "global_step"
        ]
        == 3
    )
