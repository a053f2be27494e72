"""Fixtures of the reliability suite; helpers live in ``reliability_support`` (same folder)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test modules import reliability_support

from reliability_support import cells, quiet, tiny_model

import xtrimogene_sc as xtg


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: intra-op threads only add overhead (and oversubscribe a shared CI box)."""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Objects the table rows act on, built once per module (rows must not mutate them)."""
    root = tmp_path_factory.mktemp("reliability")
    registered = cells()
    quiet(xtg.XTrimoGene.setup_anndata, registered, labels_key="labels", batch_key="batch")
    model = tiny_model(registered)
    model_dir = root / "model"
    model.save(model_dir)
    h5ad = root / "cells.h5ad"
    cells(seed=2).write_h5ad(h5ad)
    not_hdf5 = root / "notes.h5ad"
    not_hdf5.write_text("not an HDF5 file")
    return {
        "root": root, "adata": registered, "model": model, "model_dir": model_dir,
        "h5ad": h5ad, "not_hdf5": not_hdf5,
    }  # fmt: skip
