"""Bad inputs x the Python API (model class, vocabulary, classifier, pretraining functions).

Each row states the exception type (or the warning, for inputs accepted with one) and a fragment
of the message the user reads; the id says what was wrong with the input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from reliability_support import Case, cells, quiet, tiny_model

import xtrimogene_sc as xtg
from xtrimogene_sc.model import CheckpointError, XTrimoGeneClassifier
from xtrimogene_sc.pretrain import PretrainConfig, export_pretrained, preprocess_h5ad

XTG = xtg.XTrimoGene


def _setup(adata: ad.AnnData, **kwargs: Any) -> None:
    quiet(XTG.setup_anndata, adata, **kwargs)


def _dask_cells() -> ad.AnnData:
    da = pytest.importorskip("dask.array")
    adata = cells()
    X = da.from_array(sp.csr_matrix(adata.X), chunks=(8, -1), asarray=False)
    return ad.AnnData(X, obs=adata.obs[[]], var=adata.var[[]])


def _with_labels(values: list[object]) -> ad.AnnData:
    adata = cells()
    adata.obs["cell_type"] = pd.Series((values * adata.n_obs)[: adata.n_obs], dtype=object).values
    return adata


def _model_copy(env: dict[str, Any], tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(env["model_dir"], target)
    return target


def flip_weight_bytes(folder: Path) -> None:
    """Invert 10 bytes of tensor data in ``model.safetensors``; its header stays valid."""
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100:-90] = bytes(b ^ 0xFF for b in data[-100:-90])
    weights.write_bytes(bytes(data))


def _load_flipped(env: dict[str, Any], tmp_path: Path) -> None:
    folder = _model_copy(env, tmp_path)
    flip_weight_bytes(folder)
    XTG.load(folder)


def _load_flipped_classifier(env: dict[str, Any], tmp_path: Path) -> None:
    classifier = XTrimoGeneClassifier(env["model"], hidden_dim=8)
    classifier._build(np.array(["B", "T"], dtype=object))  # an untrained head saves the same way
    classifier.save(tmp_path / "clf")
    flip_weight_bytes(tmp_path / "clf")
    XTrimoGeneClassifier.load(tmp_path / "clf")


def _load_invalid_json(env: dict[str, Any], tmp_path: Path) -> None:
    folder = _model_copy(env, tmp_path)
    (folder / "config.json").write_text("{")
    XTG.load(folder)


def _edit_config(env: dict[str, Any], tmp_path: Path, **changes: Any) -> None:
    folder = _model_copy(env, tmp_path)
    meta = json.loads((folder / "config.json").read_text())
    meta["config"].update(changes.pop("config", {}))
    meta.update(changes)
    (folder / "config.json").write_text(json.dumps(meta))
    XTG.load(folder)


def _train(adata: ad.AnnData, **kwargs: Any) -> None:
    model = tiny_model(adata)
    model.train(enable_progress_bar=False, **kwargs)


def _registered(n_obs: int = 24) -> ad.AnnData:
    adata = cells(n_obs=n_obs)
    _setup(adata)
    return adata


def _non_model_folder(tmp_path: Path) -> Path:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "analysis.h5ad").write_text("the user's only copy")
    return tmp_path / "results"


def _truncated_ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "models.ckpt"
    torch.save({"cell": {"config": {}, "state_dict": {"w": torch.zeros(1000)}}}, path)
    path.write_bytes(path.read_bytes()[:600])
    return path


class _NeedsPickle:
    pass


def _pickle_ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "models.ckpt"
    torch.save({"cell": {"config": _NeedsPickle(), "state_dict": {}}}, path)
    return path


def _bad_h5ad_folder(env: dict[str, Any], tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(env["h5ad"], folder / "good.h5ad")
    shutil.copy(env["not_hdf5"], folder / "notes.h5ad")
    data = env["h5ad"].read_bytes()
    (folder / "truncated.h5ad").write_bytes(data[: len(data) // 2])
    return folder


def _lowercase_third(adata: ad.AnnData) -> ad.AnnData:
    names = list(adata.var_names)
    adata.var_names = [n.lower() if i % 3 == 0 else n for i, n in enumerate(names)]
    return adata


def _config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


CASES = [
    # ---------------------------------------------------------------- setup_anndata
    Case("setup-0-cells", lambda e, t: _setup(cells()[:0].copy()),
         ValueError, "has no cells", "C1 setup_anndata on 0 cells"),
    Case("setup-dask-array", lambda e, t: _setup(_dask_cells()),
         ValueError, "is a dask array", "C2 setup_anndata on dask arrays"),
    Case("setup-missing-layer", lambda e, t: _setup(cells(), layer="raw"),
         ValueError, "is not a layer of this AnnData (layers: ['counts'])", "C4 missing layer"),
    Case("setup-X-none", lambda e, t: _setup(ad.AnnData(obs=cells().obs, var=cells().var)),
         ValueError, "adata.X is None", "new"),
    Case("setup-nan-labels", lambda e, t: _setup(_with_labels(["B", "T", np.nan]), labels_key="cell_type"),
         ValueError, "cells with a missing (NaN) value", "C6 NaN labels at setup_anndata"),
    Case("setup-nan-text-labels", lambda e, t: XTG.setup_anndata(_with_labels(["B", "nan"]), labels_key="cell_type"),
         UserWarning, "looks like a missing value turned into text", "W11 'nan' label becomes a class"),
    Case("setup-labels-key-not-a-column", lambda e, t: _setup(cells(), labels_key="celltype"),
         ValueError, "labels_key='celltype' is not a column of adata.obs", "new"),
    Case("setup-log-normalised", lambda e, t: _setup(ad.AnnData(np.log1p(cells().X.toarray()) + 0.01, var=cells().var)),
         ValueError, "non-integer values", "held"),
    Case("setup-lower-cased-symbols", lambda e, t: XTG.setup_anndata(_lowercase_third(cells())),
         UserWarning, "gene symbols match the vocabulary only when case is ignored", "W3 symbols in another case"),
    # ---------------------------------------------------------------- embedding
    Case("embed-t-value-nan", lambda e, t: e["model"].get_latent_representation(t_value=float("nan"), progress=False),
         ValueError, "t_value must be a finite number", "W9 t_value=nan (fixed on main)"),
    Case("embed-0-cells", lambda e, t: quiet(e["model"].get_latent_representation, cells()[:0].copy(), progress=False),
         ValueError, "has no cells", "W10 0 cells gives obsm (0, 0)"),
    Case("embed-negative-batch-size", lambda e, t: e["model"].get_latent_representation(batch_size=-3, progress=False),
         ValueError, "batch_size must be a positive integer, got -3", "new (was an empty (0, 0) result)"),
    Case("embed-bad-pooling", lambda e, t: e["model"].get_latent_representation(pooling="sum", progress=False),
         ValueError, "unknown pooling 'sum'", "held"),
    Case("embed-missing-layer", lambda e, t: quiet(e["model"].get_latent_representation, cells(), layer="raw", progress=False),
         ValueError, "is not a layer of this AnnData", "C4 missing layer"),
    Case("gene-embeddings-empty-list", lambda e, t: e["model"].get_gene_embeddings(genes=[], progress=False),
         ValueError, "genes must be a non-empty list", "new"),
    # ---------------------------------------------------------------- training
    Case("train-max-epochs-0", lambda e, t: _train(_registered(), max_epochs=0),
         ValueError, "max_epochs must be a positive integer", "W4 max_epochs=0 trains the default"),
    Case("train-max-epochs-minus-1", lambda e, t: _train(_registered(), max_epochs=-1),
         ValueError, "max_epochs must be a positive integer", "W5 max_epochs=-1 never returns"),
    Case("train-max-epochs-float", lambda e, t: _train(_registered(), max_epochs=2.5),
         ValueError, "max_epochs must be a positive integer", "new"),
    Case("train-batch-size-0", lambda e, t: _train(_registered(), batch_size=0),
         ValueError, "batch_size must be a positive integer", "crash (ZeroDivisionError)"),
    Case("train-lr-nan", lambda e, t: _train(_registered(), lr=float("nan")),
         ValueError, "lr must be a finite number > 0", "new"),
    Case("train-compile-string", lambda e, t: _train(_registered(), compile="yes"),
         ValueError, "compile must be True or False, got 'yes'", "new"),
    Case("embed-compile-string", lambda e, t: e["model"].get_latent_representation(compile=1, progress=False),
         ValueError, "compile must be True or False, got 1", "new"),
    Case("train-one-cell", lambda e, t: _train(_registered(n_obs=1), max_epochs=1),
         ValueError, "needs at least one training cell", "W6 too few cells marked trained"),
    Case("model-unknown-override", lambda e, t: XTG(preset="tiny", heads=4),
         ValueError, "unknown XTrimoGeneConfig fields ['heads']", "new (was a TypeError)"),
    Case("classifier-max-epochs-0", lambda e, t: XTrimoGeneClassifier(e["model"]).train(e["adata"], labels_key="labels", max_epochs=0),
         ValueError, "max_epochs must be a positive integer", "new"),
    # ---------------------------------------------------------------- saving
    Case("save-overwrite-non-model-folder", lambda e, t: e["model"].save(_non_model_folder(t), overwrite=True),
         FileExistsError, "holds no saved model", "W1 save(overwrite=True) deletes other files"),
    Case("save-over-a-file", lambda e, t: e["model"].save(e["h5ad"], overwrite=True),
         FileExistsError, "is a file, not a directory", "W1 overwriting a regular file"),
    Case("save-existing-model", lambda e, t: e["model"].save(e["model_dir"]),
         FileExistsError, "pass overwrite=True", "held"),
    Case("export-over-non-model-folder", lambda e, t: export_pretrained(e["model"].module, _non_model_folder(t)),
         FileExistsError, "holds no saved model", "W1 (pretraining export)"),
    # ---------------------------------------------------------------- loading
    Case("load-missing-dir", lambda e, t: XTG.load(t / "nope"),
         FileNotFoundError, "no such model directory", "C9 errors name the file"),
    Case("load-flipped-weight-bytes", _load_flipped,
         CheckpointError, "model.safetensors is corrupted or was modified", "W7 flipped bytes load silently"),
    Case("load-config-other-heads", lambda e, t: _edit_config(e, t, config={"encoder_heads": 4}),
         CheckpointError, "config.json was modified after the model was saved", "W8 edited head count loads"),
    Case("load-config-not-json", _load_invalid_json,
         CheckpointError, "config.json is not valid JSON", "C9 errors name the file"),
    Case("load-future-format", lambda e, t: _edit_config(e, t, format_version=99),
         CheckpointError, "model format version 99", "new"),
    Case("load-not-a-checkpoint", lambda e, t: XTG.load(e["not_hdf5"]),
         CheckpointError, "notes.h5ad is not a readable PyTorch checkpoint", "C9 (was 'KeyError: 101')"),
    Case("load-truncated-ckpt", lambda e, t: XTG.from_scfoundation(_truncated_ckpt(t)),
         CheckpointError, "is not a readable PyTorch checkpoint", "held (fixed on main)"),
    Case("load-ckpt-needs-pickle", lambda e, t: XTG.from_scfoundation(_pickle_ckpt(t)),
         CheckpointError, "needs full pickle", "held (fixed on main)"),
    Case("classifier-load-pretrained-dir", lambda e, t: XTrimoGeneClassifier.load(e["model_dir"]),
         ValueError, "holds a pretrained model, not a classifier", "held"),
    Case("classifier-load-flipped-bytes", _load_flipped_classifier,
         CheckpointError, "corrupted or was modified", "W7 (same file format)"),
    # ---------------------------------------------------------------- pretraining
    Case("preprocess-bad-files", lambda e, t: preprocess_h5ad(_bad_h5ad_folder(e, t), t / "c", progress=False),
         ValueError, "2 of 3 input files cannot be preprocessed", "C3 non-HDF5/truncated inputs"),
    Case("pretrain-config-not-toml", lambda e, t: PretrainConfig.from_file(_config_file(t, "[optim\n")),
         ValueError, "is not valid TOML", "C8 bad config values"),
    Case("pretrain-config-wrong-type", lambda e, t: PretrainConfig.from_file(_config_file(t, '[optim]\nlr = "fast"\n')),
         ValueError, "optim.lr must be a finite number, got 'fast'", "C8 (was a TypeError)"),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_api_refuses_bad_input_clearly(case: Case, env: dict[str, Any], tmp_path: Path) -> None:
    case.check(env, tmp_path)
