"""Bad inputs x the task models (classifier, perturbation, drug combination): the guarantees of
``XTrimoGene`` hold for each of them.

Each row states the exception type and a fragment of the message the user reads; ``issue``
names the case of issue 30 it covers ("new" for a row the same patterns suggested). A ``.ckpt``
with a NaN weight is tested in ``tests/model/test_scfoundation.py``, which builds the released
layout.
"""

from __future__ import annotations

import itertools
import shutil
import warnings
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from reliability_support import Case, quiet, tiny_model
from test_api_table import flip_weight_bytes

import xtrimogene_sc as xtg
from xtrimogene_sc.model import CheckpointError, XTrimoGeneClassifier, XTrimoGenePerturbation

SIM = {
    "n_genes": 150, "n_programs": 4, "program_size": 20, "n_single": 8, "n_combos": 2,
    "cells_per_condition": 6, "n_control": 40,
}  # fmt: skip


def _drug_tables(seed: int = 0) -> tuple[pd.DataFrame, ad.AnnData, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    drugs = pd.DataFrame(
        (rng.random((5, 16)) < 0.3).astype(np.float32), index=[f"d{i}" for i in range(5)]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lines = ad.AnnData(np.abs(rng.normal(size=(3, 4))).astype(np.float32))
    lines.obs_names = ["c0", "c1", "c2"]
    lines.obsm["X_feat"] = rng.normal(size=(3, 4)).astype(np.float32)
    rows = [
        (f"d{i}", f"d{j}", f"c{c}", float(rng.normal()))
        for (i, j), c in itertools.product(itertools.combinations(range(5), 2), range(3))
    ]
    table = pd.DataFrame(rows, columns=["drug_a", "drug_b", "cell_line", "synergy_loewe"])
    table["label"] = (table["synergy_loewe"] > 0).astype(float)
    return drugs, lines, table


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny backbone, a perturbation screen, drug tables and one saved model of each kind."""
    root = tmp_path_factory.mktemp("task_models")
    torch.set_num_threads(1)
    backbone = tiny_model()
    backbone.save(root / "backbone")
    sim = xtg.datasets.synthetic_perturbseq(**SIM, seed=3)
    quiet(XTrimoGenePerturbation.setup_anndata, sim)
    perturbation = XTrimoGenePerturbation(sim, backbone=backbone, hidden_dim=8)
    perturbation.train(max_steps=2, batch_size=4)
    perturbation.save(root / "perturbation")
    classifier = XTrimoGeneClassifier(backbone, hidden_dim=8)
    classifier._build(np.array(["B", "T"], dtype=object))  # an untrained head saves the same way
    classifier.save(root / "classifier")
    drugs, lines, table = _drug_tables()
    drug = xtg.DrugCombinationModel(drugs, lines, cell_key="X_feat", hidden_dim=8, drug_dim=4,
                                    cell_dim=4)  # fmt: skip
    drug.train(table, max_epochs=2)
    drug.save(root / "drug")
    ctrl = sim[(sim.obs["condition"] == "ctrl").to_numpy()].copy()
    return {
        "root": root, "backbone": backbone, "sim": sim, "ctrl": ctrl, "drugs": drugs,
        "lines": lines, "table": table, "perturbation": perturbation, "drug": drug,
    }  # fmt: skip


def _copy(e: dict[str, Any], t: Path, name: str) -> Path:
    target = t / name
    shutil.copytree(e["root"] / name, target)
    return target


def _flipped(e: dict[str, Any], t: Path, name: str) -> Path:
    folder = _copy(e, t, name)
    flip_weight_bytes(folder)
    return folder


def _perturbation(e: dict[str, Any], **kwargs: Any) -> XTrimoGenePerturbation:
    return XTrimoGenePerturbation(e["sim"], backbone=e["backbone"], hidden_dim=8, **kwargs)


def _train_perturbation(e: dict[str, Any], **kwargs: Any) -> None:
    _perturbation(e).train(**{"max_steps": 2, "batch_size": 4, **kwargs})


def _drug(e: dict[str, Any]) -> xtg.DrugCombinationModel:
    return xtg.DrugCombinationModel(
        e["drugs"], e["lines"], cell_key="X_feat", hidden_dim=8, drug_dim=4, cell_dim=4
    )


def _train_drug(e: dict[str, Any], table: pd.DataFrame | None = None, **kwargs: Any) -> None:
    _drug(e).train(e["table"] if table is None else table, **{"max_epochs": 2, **kwargs})


CASES = [
    # ---------------------------------------------------------------- perturbation: arguments
    Case("perturbation-max-steps-0", lambda e, t: _train_perturbation(e, max_steps=0),
         ValueError, "max_steps must be a positive integer, got 0", "ZeroDivisionError"),
    Case("perturbation-max-steps-minus-1", lambda e, t: _train_perturbation(e, max_steps=-1),
         ValueError, "max_steps must be a positive integer, got -1", "KeyError 'train_loss'"),
    Case("perturbation-batch-size-0", lambda e, t: _train_perturbation(e, batch_size=0),
         ValueError, "batch_size must be a positive integer, got 0", "trained on NaN loss"),
    Case("perturbation-lr-nan", lambda e, t: _train_perturbation(e, lr=float("nan")),
         ValueError, "lr must be a finite number > 0, got nan", "predicted non-finite values"),
    Case("perturbation-backbone-lr-0", lambda e, t: _train_perturbation(e, backbone_lr=0.0),
         ValueError, "backbone_lr must be None or a finite number > 0", "new"),
    Case("perturbation-weight-decay-negative", lambda e, t: _train_perturbation(e, weight_decay=-1),
         ValueError, "weight_decay must be a finite number >= 0", "new (was torch's message)"),
    Case("perturbation-bad-pooling", lambda e, t: _perturbation(e, pooling="sum"),
         ValueError, "unknown pooling 'sum'", "new"),
    Case("perturbation-too-many-trainable-layers", lambda e, t: _perturbation(e, n_trainable_layers=5),
         ValueError, "n_trainable_layers must be an integer in [0, 2]", "one freezing rule"),
    Case("perturbation-predict-plus", lambda e, t: e["perturbation"].predict(e["ctrl"], conditions=["+"]),
         ValueError, "condition '+' names no perturbation", "predict(['+'])"),
    Case("perturbation-predict-empty", lambda e, t: e["perturbation"].predict(e["ctrl"], conditions=[""]),
         ValueError, "condition '' names no perturbation", "predict([''])"),
    Case("perturbation-load-flipped-bytes", lambda e, t: XTrimoGenePerturbation.load(_flipped(e, t, "perturbation")),
         CheckpointError, "corrupted or was modified", "new (same file format)"),
    Case("perturbation-load-unknown-keyword", lambda e, t: XTrimoGenePerturbation.load(e["root"] / "perturbation", adata_ctrl=None),
         TypeError, "unexpected keyword argument 'adata_ctrl'", "load(**unknown)"),
    # ---------------------------------------------------------------- drug combination
    Case("drug-max-epochs-0", lambda e, t: _train_drug(e, max_epochs=0),
         ValueError, "max_epochs must be a positive integer, got 0", "predicted ~0.5 from random weights"),
    Case("drug-batch-size-0", lambda e, t: _train_drug(e, batch_size=0),
         ValueError, "batch_size must be a positive integer, got 0", "raw torch error"),
    Case("drug-lr-nan", lambda e, t: _train_drug(e, lr=float("nan")),
         ValueError, "lr must be a finite number > 0, got nan", "new (was torch's message)"),
    Case("drug-validation-size-2", lambda e, t: _train_drug(e, validation_size=2),
         ValueError, "validation_size must be in [0, 1), got 2", "new (trained silently)"),
    Case("drug-missing-cell-line-column", lambda e, t: _train_drug(e, e["table"].drop(columns=["cell_line"])),
         KeyError, "combinations lack the column(s) ['cell_line']", "missing columns named"),
    Case("drug-missing-label-column", lambda e, t: _train_drug(e, e["table"].drop(columns=["label"])),
         KeyError, "combinations lack the column(s) ['label']", "missing columns named"),
    Case("drug-predict-batch-size-0", lambda e, t: e["drug"].predict(e["table"], batch_size=0),
         ValueError, "batch_size must be a positive integer, got 0", "new"),
    Case("drug-load-flipped-bytes", lambda e, t: xtg.DrugCombinationModel.load(_flipped(e, t, "drug")),
         CheckpointError, "model.safetensors is corrupted or was modified", "loaded and predicted NaN"),
    Case("drug-load-missing-dir", lambda e, t: xtg.DrugCombinationModel.load(t / "nope"),
         FileNotFoundError, "no such model directory", "new"),
    # ---------------------------------------------------------------- classifier
    Case("classifier-weight-decay-nan", lambda e, t: XTrimoGeneClassifier(e["backbone"]).train(e["sim"], labels_key="condition", weight_decay=float("nan")),
         ValueError, "weight_decay must be a finite number >= 0, got nan", "new"),
    Case("classifier-bad-pooling", lambda e, t: XTrimoGeneClassifier(e["backbone"], pooling="sum"),
         ValueError, "unknown pooling 'sum'", "new (was a KeyError at train)"),
    # ---------------------------------------------------------------- one loader per kind
    Case("xtrimogene-load-classifier-dir", lambda e, t: xtg.XTrimoGene.load(e["root"] / "classifier"),
         ValueError, "holds a classifier, not a pretrained model; load it with xtrimogene_sc.XTrimoGeneClassifier.load", "XTrimoGene.load of a classifier"),
    Case("xtrimogene-load-perturbation-dir", lambda e, t: xtg.XTrimoGene.load(e["root"] / "perturbation"),
         ValueError, "holds a perturbation model, not a pretrained model", "new"),
    Case("xtrimogene-load-drug-dir", lambda e, t: xtg.XTrimoGene.load(e["root"] / "drug"),
         ValueError, "holds a drug-combination model, not a pretrained model", "new"),
    Case("drug-load-backbone-dir", lambda e, t: xtg.DrugCombinationModel.load(e["root"] / "backbone"),
         ValueError, "holds a pretrained model, not a drug-combination model", "new"),
    Case("xtrimogene-load-unknown-keyword", lambda e, t: xtg.XTrimoGene.load(e["root"] / "backbone", map_location="cpu"),
         TypeError, "unexpected keyword argument 'map_location'", "load(**unknown) was ignored"),
    Case("from-scfoundation-model-dir", lambda e, t: xtg.XTrimoGene.from_scfoundation(e["root"] / "backbone"),
         IsADirectoryError, "holds a model saved by xtrimogene_sc; from_scfoundation reads", "says to use load"),
    Case("load-query-data-missing-dir", lambda e, t: xtg.model.load_query_data(e["ctrl"], t / "nope"),
         FileNotFoundError, "is not a saved model directory (no config.json there)", "missing folder named"),
    # ---------------------------------------------------------------- gene names
    Case("setup-integer-gene-names", lambda e, t: xtg.XTrimoGene.setup_anndata(_integer_genes(e)),
         ValueError, "Hint: the gene names are integers", "integer gene names"),
]  # fmt: skip


def _integer_genes(e: dict[str, Any]) -> ad.AnnData:
    adata = e["ctrl"].copy()
    adata.var_names = [str(i) for i in range(adata.n_vars)]
    return adata


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_task_models_refuse_bad_input_clearly(case: Case, env: dict[str, Any], tmp_path: Path):
    case.check(env, tmp_path)


def test_old_drug_model_folders_still_load_with_a_warning(env: dict[str, Any], tmp_path: Path):
    """A folder of the checksum-free format 1 (before this change) loads, unverified."""
    import json

    folder = _copy(env, tmp_path, "drug")
    meta = json.loads((folder / "config.json").read_text())
    for key in ("integrity", "files"):
        meta.pop(key)
    meta["format_version"] = 1
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="without checksums, so it is loaded unverified"):
        loaded = xtg.DrugCombinationModel.load(folder)
    np.testing.assert_array_equal(loaded.predict(env["table"]), env["drug"].predict(env["table"]))
