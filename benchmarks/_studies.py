"""Staged PBMC studies with one coarse cell-type vocabulary, for benchmarks across batches.

Three studies of human PBMCs, three chemistries and gene lists:

* ``zheng``: the FACS-sorted PBMCs of Zheng et al. 2017 (10x GemCode), labels from the sort;
* ``kang``: Kang et al. 2018 (10x v2), control and IFN-beta stimulated, scGen's labels;
* ``pbmc68k``: the 700 cells bundled with scanpy (Zheng 2017's fresh 68k PBMCs, 10x GemCode),
  labelled by correlation with the sorted populations' bulk profiles (``bulk_labels``), so
  noisier than the other two.

Every study's labels are mapped onto ``COARSE_TYPES`` by the tables below; a label with no
counterpart (pbmc68k's ``CD34+`` progenitors) is dropped. The sorted PBMCs have no dendritic
cells. Each study's genes are renamed to the vocabulary's current symbols (exact, case,
Ensembl and synonym rules, :meth:`xtrimogene_sc.GeneVocab.align`) before studies are joined on
the genes they share, so that the same gene under an old and a new symbol is one column.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data"
ZHENG = SHARED / "annotation" / "zheng2017_sorted_pbmc.h5ad"
KANG = SHARED / "perturbation" / "kang2018_pbmc_ifnb_scgen_valid.h5ad"

COARSE_TYPES = ("B", "CD4 T", "CD8 T", "NK", "Monocyte", "Dendritic")
COARSE = {
    "zheng": {
        "CD19+ B cell": "B",
        "CD4+ helper T cell": "CD4 T",
        "CD4+/CD45RO+ memory T cell": "CD4 T",
        "CD4+/CD25+ regulatory T cell": "CD4 T",
        "CD4+/CD45RA+/CD25- naive T cell": "CD4 T",
        "CD8+ cytotoxic T cell": "CD8 T",
        "CD8+/CD45RA+ naive cytotoxic T cell": "CD8 T",
        "CD56+ NK cell": "NK",
        "CD14+ monocyte": "Monocyte",
    },
    "kang": {
        "B": "B",
        "CD4T": "CD4 T",
        "CD8T": "CD8 T",
        "NK": "NK",
        "CD14+Mono": "Monocyte",
        "FCGR3A+Mono": "Monocyte",
        "Dendritic": "Dendritic",
    },
    "pbmc68k": {
        "CD19+ B": "B",
        "CD4+/CD25 T Reg": "CD4 T",
        "CD4+/CD45RO+ Memory": "CD4 T",
        "CD4+/CD45RA+/CD25- Naive T": "CD4 T",
        "CD8+ Cytotoxic T": "CD8 T",
        "CD8+/CD45RA+ Naive Cytotoxic": "CD8 T",
        "CD56+ NK": "NK",
        "CD14+ Monocyte": "Monocyte",
        "Dendritic": "Dendritic",
    },
}
LABEL_COLUMN = {"zheng": "cell_type", "kang": "cell_type", "pbmc68k": "bulk_labels"}


def read_study(name: str) -> Any:
    """One study's raw counts (CSR) with ``obs["study"]``, ``obs["cell_type"]`` (its own labels)
    and ``obs["coarse_type"]``; cells without a coarse counterpart are dropped."""
    import anndata as ad
    import scipy.sparse as sp

    import xtrimogene_sc as xtg

    if name == "pbmc68k":
        adata = xtg.datasets.pbmc68k_counts()
        del adata.layers["counts"]
    else:
        path = {"zheng": ZHENG, "kang": KANG}.get(name)
        if path is None:
            sys.exit(f"unknown study {name!r}: use {sorted(COARSE)}")
        if not path.exists():
            sys.exit(f"{path} not found (the shared data folder sits beside the checkout)")
        adata = ad.read_h5ad(path)
    labels = adata.obs[LABEL_COLUMN[name]].astype(str)
    coarse = labels.map(COARSE[name])
    adata = adata[coarse.notna().to_numpy()].copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.obs = adata.obs.assign(
        study=name, cell_type=labels[coarse.notna()].to_numpy(), coarse_type=coarse.dropna()
    )
    adata.obs_names = [f"{name}:{cell}" for cell in adata.obs_names]
    return current_symbols(adata)


def current_symbols(adata: Any) -> Any:
    """The columns that match a vocabulary gene, renamed to its symbol (first column of each)."""
    import xtrimogene_sc as xtg

    alignment = xtg.GeneVocab.default().align(adata)
    positions = alignment.var_to_position
    keep = positions >= 0
    keep[keep] = ~_repeated(positions[keep])
    data = adata[:, keep].copy()
    data.var_names = np.asarray(xtg.GeneVocab.default().names)[positions[keep]]
    return data


def _repeated(values: np.ndarray) -> np.ndarray:
    """True at every value seen earlier in the array."""
    _, first = np.unique(values, return_index=True)
    repeated = np.ones(len(values), dtype=bool)
    repeated[first] = False
    return repeated


def kang_conditions() -> Any:
    """The Kang cells, control and stimulated: ``obs["batch"]`` is the condition."""
    adata = read_study("kang")
    adata.obs["batch"] = adata.obs["condition"].astype(str)
    return adata


def three_studies() -> Any:
    """Sorted PBMCs, Kang controls and the bundled PBMCs on their shared genes; batch = study."""
    import anndata as ad

    parts = [read_study("zheng"), read_study("kang"), read_study("pbmc68k")]
    parts[1] = parts[1][parts[1].obs["condition"].astype(str) == "control"].copy()
    union = ad.concat(parts, join="inner", merge=None)
    union.obs["batch"] = union.obs["study"].astype(str)
    return union


SETTINGS = {"kang_conditions": kang_conditions, "three_studies": three_studies}
