"""Execute the tutorials as scripts in their bounded form (as CI does)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
SHARED_DATA = TUTORIALS.parents[1] / "shared" / "data"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_annotation_tutorial_runs(tmp_path, slow_full):
    env = {
        **os.environ,
        "XTG_TUTORIAL_FIGDIR": str(tmp_path),
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "2",
    }
    if not slow_full:
        env["XTG_TUTORIAL_BOUNDED"] = "1"
    result = subprocess.run(
        [sys.executable, str(TUTORIALS / "annotation.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "macro-F1" in result.stdout
    written = {p.name for p in tmp_path.glob("*.png")}
    assert {"confusion_matrix.png", "umap_annotation.png", "finetuning_curves.png"} <= written


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_drug_combination_tutorial_runs(tmp_path, slow_full):
    pytest.importorskip(
        "rdkit", reason="RDKit is not installed (pip install 'xtrimogene-sc[drug]')"
    )
    for needed in ("drug_combination", "annotation"):
        if not (SHARED_DATA / needed).exists():
            pytest.skip(f"shared data {SHARED_DATA / needed} not found")
    env = {
        **os.environ,
        "XTG_TUTORIAL_FIGDIR": str(tmp_path),
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
    }
    if not slow_full:
        env["XTG_TUTORIAL_BOUNDED"] = "1"
    result = subprocess.run(
        [sys.executable, str(TUTORIALS / "drug_combination.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "AUROC" in result.stdout
    assert "refused: this 'cell_line' split leaks" in result.stdout
    assert "Pearson r on unseen cell lines" in result.stdout
    written = {p.name for p in tmp_path.glob("*.png")}
    assert {"roc_leave_cell_line_out.png", "loewe_scatter.png"} <= written
