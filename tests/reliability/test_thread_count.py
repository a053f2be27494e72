"""The scanpy steps we run leave torch's thread count where the caller set it.

numba's OpenMP threading layer sets OpenMP's thread count to every CPU on its first parallel
call, and torch reads it: without a guard, a run limited to one thread trained on all cores
after choosing its gene panel. It shows once torch has started its thread pool, and numba does
it once per process, so each call is checked in a fresh interpreter that has used torch.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

PRELUDE = """
import warnings
import torch
torch.set_num_threads(1)
import xtrimogene_sc as xtg
from xtrimogene_sc.tl._scores import pca_reference
warnings.simplefilter("ignore")
adata = xtg.datasets.pbmc68k_counts()
assert torch.get_num_threads() == 1  # torch has started its pool, as in any session
"""

CALLS = {
    "gene panel": "xtg.pp.highly_variable_genes(adata, 100)",
    "PCA baseline": "pca_reference(adata, n_comps=10)",
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_scanpy_steps_keep_torch_threads(call):
    script = PRELUDE + call + "\nprint(torch.get_num_threads())\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    assert done.stdout.split()[-1] == "1"
