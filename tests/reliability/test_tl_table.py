"""Bad inputs x the scanpy-style functions (``xtg.tl``, ``xtg.pp``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from reliability_support import Case, cells, quiet

import xtrimogene_sc as xtg


def _dask_cells() -> ad.AnnData:
    da = pytest.importorskip("dask.array")
    adata = cells()
    X = da.from_array(sp.csr_matrix(adata.X), chunks=(8, -1), asarray=False)
    return ad.AnnData(X, obs=adata.obs[[]], var=adata.var[[]])


def _embedded(labels: list[object], seed: int) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(np.zeros((len(labels), 3), dtype=np.float32))
    adata.obs["cell_type"] = np.asarray(labels, dtype=object)
    adata.obsm["X_xtg"] = rng.normal(size=(len(labels), 4)).astype(np.float32)
    return adata


def _annotate_with_text_nan(env: dict[str, Any], tmp_path: Path) -> None:
    reference = _embedded(["B", "T", "nan"] * 10, seed=0)
    xtg.tl.annotate(_embedded(["?"] * 6, seed=1), reference=reference, labels_key="cell_type",
                    use_rep="X_xtg", calibrate=False)  # fmt: skip


def _embed(env: dict[str, Any], adata: ad.AnnData, **kwargs: Any) -> None:
    quiet(xtg.tl.embed, adata, env["model"], progress=False, **kwargs)


def _embed_file_into_dir(env: dict[str, Any], tmp_path: Path) -> None:
    xtg.tl.embed_h5ad(env["h5ad"], env["model"], output=tmp_path, overwrite=True, progress=False)


CASES = [
    Case("embed-model-is-a-path", lambda e, t: xtg.tl.embed(cells(), str(e["model_dir"])),
         TypeError, "model must be an XTrimoGene", "new (was an AttributeError)"),
    Case("embed-key-added-not-str", lambda e, t: _embed(e, cells(), key_added=3),
         ValueError, "key_added must be a non-empty string", "new (was written silently)"),
    Case("embed-0-cells", lambda e, t: _embed(e, cells()[:0].copy()),
         ValueError, "has no cells", "W10 0 cells gives obsm (0, 0)"),
    Case("embed-t-value-nan", lambda e, t: _embed(e, cells(), t_value=float("nan")),
         ValueError, "t_value must be a finite number", "W9 (fixed on main)"),
    Case("embed-missing-layer", lambda e, t: _embed(e, cells(), layer="spliced"),
         ValueError, "layers: ['counts']", "C4 missing layer"),
    Case("embed-dask-array", lambda e, t: _embed(e, _dask_cells()),
         ValueError, "is a dask array", "C2 dask arrays"),
    Case("embed-h5ad-not-hdf5", lambda e, t: xtg.tl.embed_h5ad(e["not_hdf5"], e["model"], output=t / "o.h5ad"),
         ValueError, "is not a readable .h5ad file", "held"),
    Case("embed-h5ad-output-is-dir", _embed_file_into_dir,
         IsADirectoryError, "is a directory", "new"),
    Case("embed-h5ad-output-exists", lambda e, t: xtg.tl.embed_h5ad(e["h5ad"], e["model"], output=e["not_hdf5"]),
         FileExistsError, "pass overwrite=True", "held"),
    Case("annotate-text-nan-labels", _annotate_with_text_nan,
         UserWarning, "or the text ['nan'] of a missing value", "W11 'nan' label becomes a class"),
    Case("annotate-no-reference", lambda e, t: xtg.tl.annotate(cells(), model=e["model"]),
         ValueError, "pass reference=", "held"),
    Case("check-input-missing-layer", lambda e, t: quiet(xtg.pp.check_input, cells(), layer="raw"),
         ValueError, "is not a layer of this AnnData", "C4 missing layer"),
    Case("check-input-0-cells", lambda e, t: quiet(xtg.pp.check_input, cells()[:0].copy()),
         ValueError, "has no cells", "C1 0 cells"),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_tl_refuses_bad_input_clearly(case: Case, env: dict[str, Any], tmp_path: Path) -> None:
    case.check(env, tmp_path)


def test_annotate_ignores_text_nan_labels(env: dict[str, Any]) -> None:
    reference = _embedded(["B", "T", "nan", "None"] * 10, seed=0)
    query = _embedded(["?"] * 6, seed=1)
    quiet(xtg.tl.annotate, query, reference=reference, labels_key="cell_type", use_rep="X_xtg",
          calibrate=False)  # fmt: skip
    assert set(query.obs["xtg_label"].astype(str)) <= {"B", "T", "Unknown"}
