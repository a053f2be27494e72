"""Execute the tutorials as scripts in their bounded form (as CI does)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


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
def test_perturbation_tutorial_runs(tmp_path, slow_full):
    env = {
        **os.environ,
        "XTG_TUTORIAL_FIGDIR": str(tmp_path),
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
    }
    if not slow_full:
        env["XTG_TUTORIAL_BOUNDED"] = "1"
    result = subprocess.run(
        [sys.executable, str(TUTORIALS / "perturbation.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "pearson_delta_de" in result.stdout
    assert (tmp_path / "perturbation_unseen_gene.png").exists()
    kang = TUTORIALS.parents[1] / "shared" / "data" / "perturbation"
    if (kang / "kang2018_pbmc_ifnb_scgen_valid.h5ad").exists():
        assert (tmp_path / "perturbation_kang_cd4t.png").exists()
    else:
        assert "the Kang section is skipped" in result.stdout
