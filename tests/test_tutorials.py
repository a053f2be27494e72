"""Execute the tutorials as scripts in their bounded form (as CI does)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
SHARED_DATA = TUTORIALS.parents[1] / "shared" / "data"


def run_tutorial(name: str, figures: Path, slow_full: bool, threads: int) -> str:
    """Run ``tutorials/<name>.py`` as a script (bounded unless ``slow_full``); return stdout."""
    env = {
        **os.environ,
        "XTG_TUTORIAL_FIGDIR": str(figures),
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": str(threads),
    }
    if not slow_full:
        env["XTG_TUTORIAL_BOUNDED"] = "1"
    result = subprocess.run(
        [sys.executable, str(TUTORIALS / f"{name}.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        cwd=figures,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_annotation_tutorial_runs(tmp_path, slow_full):
    stdout = run_tutorial("annotation", tmp_path, slow_full, threads=2)
    assert "macro-F1" in stdout
    written = {p.name for p in tmp_path.glob("*.png")}
    assert {"confusion_matrix.png", "umap_annotation.png", "finetuning_curves.png"} <= written


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_perturbation_tutorial_runs(tmp_path, slow_full):
    stdout = run_tutorial("perturbation", tmp_path, slow_full, threads=1)
    assert "pearson_delta_de" in stdout
    assert (tmp_path / "perturbation_unseen_gene.png").exists()
    if (SHARED_DATA / "perturbation" / "kang2018_pbmc_ifnb_scgen_valid.h5ad").exists():
        assert (tmp_path / "perturbation_kang_cd4t.png").exists()
    else:
        assert "the Kang section is skipped" in stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_drug_combination_tutorial_runs(tmp_path, slow_full):
    pytest.importorskip(
        "rdkit", reason="RDKit is not installed (pip install 'xtrimogene-sc[drug]')"
    )
    for needed in ("drug_combination", "annotation"):
        if not (SHARED_DATA / needed).exists():
            pytest.skip(f"shared data {SHARED_DATA / needed} not found")
    stdout = run_tutorial("drug_combination", tmp_path, slow_full, threads=1)
    assert "AUROC" in stdout
    assert "refused: this 'cell_line' split leaks" in stdout
    assert "Pearson r on unseen cell lines" in stdout
    written = {p.name for p in tmp_path.glob("*.png")}
    assert {"roc_leave_cell_line_out.png", "loewe_scatter.png"} <= written
