"""Shared fixtures: seeding, thread caps, tiny data and models; marker handling.

Markers
-------
slow
    Longer end-to-end runs. They always run, in a bounded form by default (CI); set
    ``XTG_SLOW_FULL=1`` for the full-size version (use the ``slow_full`` fixture to branch).
gpu
    Needs CUDA; skipped when no GPU is visible.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

_SKIPS = {  # marker -> (should skip, reason)
    "gpu": (lambda: not torch.cuda.is_available(), "needs a CUDA GPU"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for marker, (should_skip, reason) in _SKIPS.items():
        if not should_skip():
            continue
        for item in items:
            if marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


# pytest-xdist runs the suite in two worker processes (pyproject's addopts): each gets one
# intra-op thread, so that the workers fill the cores without oversubscribing them.
_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - libraries still draw from the legacy global state
    torch.manual_seed(0)
    torch.set_num_threads(_THREADS)


@pytest.fixture
def one_torch_thread():
    """Run the test on one intra-op thread, then restore the count.

    Small models gain nothing from a second thread but synchronisation, which costs a lot on a
    loaded or shared CI machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def slow_full() -> bool:
    """True when slow tests should run at full size (``XTG_SLOW_FULL=1``)."""
    return os.environ.get("XTG_SLOW_FULL") == "1"


@pytest.fixture
def tiny_adata():
    """300 cells x 400 vocabulary genes of labelled synthetic counts (sparse CSR)."""
    from xtrimogene_sc.datasets import synthetic_counts

    return synthetic_counts(n_obs=300, n_vars=400, n_labels=3, n_batches=2, seed=0)


@pytest.fixture
def tiny_config():
    """A very small config for unit tests (masked decoder: fast on CPU)."""
    from xtrimogene_sc.module import XTrimoGeneConfig

    return XTrimoGeneConfig.preset(
        "tiny", encoder_dim=32, encoder_heads=2, decoder_dim=16, decoder_heads=2,
        decoder_nb_features=8, bin_num=16, decoder_mode="masked",
    )  # fmt: skip


@pytest.fixture(scope="session")
def trained_tiny_model():
    """A tiny model trained for 2 epochs on 200 synthetic cells (shared, do not mutate)."""
    import warnings

    import xtrimogene_sc as xtg

    adata = xtg.datasets.synthetic_counts(n_obs=200, n_vars=300, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xtg.XTrimoGene.setup_anndata(adata, labels_key="labels", batch_key="batch")
    torch.manual_seed(0)
    model = xtg.XTrimoGene(adata, preset="tiny", decoder_mode="masked")
    model.train(max_epochs=2, batch_size=32, enable_progress_bar=False)
    return model


@pytest.fixture(scope="session")
def exact_perturbation_data():
    """Factory of hand-built perturbation counts whose responses are known exactly.

    Every cell has 10,000 counts over 130 vocabulary genes, so its log-normalised value is
    ``ln(1 + count)``. Condition A raises gene 0 from 1 to 3 counts and lowers gene 1 by 2;
    condition B does the same to genes 2 and 3; "A+B" does both, so every gene's response to
    "A+B" is exactly the sum of its responses to A and B. The conditions are named by the
    vocabulary symbols ``names["A"]`` and ``names["B"]``. With ``cell_types=True`` a second cell
    type ("T2") has other baseline counts and the same changes.
    """
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    from xtrimogene_sc.data import GeneVocab

    symbols = [n for n in GeneVocab.default().names if not n.endswith("__chrM")][:130]
    names = {"A": symbols[10], "B": symbols[11]}

    def profile(condition: str, offset: int) -> np.ndarray:
        counts = np.full(130, 20.0 + offset)
        counts[[0, 2]] = 1.0
        counts[[1, 3]] = 1001.0
        if "A" in condition:
            counts[0] += 2
            counts[1] -= 2
        if "B" in condition:
            counts[2] += 2
            counts[3] -= 2
        counts[-1] = 10_000 - counts[:-1].sum()
        return counts

    def build(*, n_per_condition: int = 3, cell_types: bool = False, conditions=None):
        conditions = conditions or ["ctrl", "A", "B", "A+B"]
        types = ["T1", "T2"] if cell_types else ["T1"]
        rows, obs = [], []
        for t, cell_type in enumerate(types):
            for condition in conditions:
                label = (
                    "+".join(names[c] for c in condition.split("+"))
                    if condition != "ctrl"
                    else "ctrl"
                )
                for _ in range(n_per_condition):
                    rows.append(profile(condition, 5 * t))
                    obs.append((label, cell_type))
        frame = pd.DataFrame(obs, columns=["condition", "cell_type"])
        frame.index = [f"c{i}" for i in range(len(frame))]
        X = sp.csr_matrix(np.array(rows, dtype=np.float32))
        return ad.AnnData(X=X, obs=frame, var=pd.DataFrame(index=symbols))

    build.names = names
    build.profile = profile
    return build
