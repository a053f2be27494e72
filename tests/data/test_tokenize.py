from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data._tokenize import DepthSpec, tokenize_counts


def _dense_reference(counts: np.ndarray, var_to_position: np.ndarray) -> np.ndarray:
    aligned = np.zeros((counts.shape[0], TOKENS.N_GENES))
    for col, p in enumerate(var_to_position):
        if p >= 0:
            aligned[:, p] += counts[:, col]
    totals = aligned.sum(1, keepdims=True)
    return np.log1p(1e4 * aligned / totals), totals.ravel()


def test_tokenize_matches_dense_reference_with_duplicates_and_unknown_genes():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.5, size=(7, 30)).astype(np.float32)
    counts[:, 0] += 1  # no empty cells
    v2p = rng.choice(TOKENS.N_GENES, 30, replace=False)
    v2p[5] = v2p[6]  # a duplicated symbol: summed
    v2p[[7, 8]] = -1  # genes outside the vocabulary: dropped
    expected, totals = _dense_reference(counts, v2p)
    cells = tokenize_counts(sp.csr_matrix(counts), v2p)
    got = np.zeros_like(expected)
    rows = cells.row_ids().numpy()
    got[rows, cells.pos.numpy()] = cells.value.numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert all(np.all(np.diff(cells.pos[s:e].numpy()) > 0)
               for s, e in zip(cells.crow[:-1], cells.crow[1:], strict=True))  # fmt: skip
    np.testing.assert_allclose(cells.depth_s.numpy(), np.log10(totals), rtol=1e-6)


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [("fold", 1.0, lambda s: s), ("fold", 10.0, lambda s: s + 1), ("absolute", 4.0, lambda s: 4.0 + 0 * s),
     ("add_log10", 0.5, lambda s: s + 0.5)],
)  # fmt: skip
def test_target_depth_semantics(mode, value, expected):
    counts = sp.csr_matrix(np.array([[10.0, 90.0], [1.0, 0.0]]))
    cells = tokenize_counts(counts, np.array([0, 1]), depth=DepthSpec(mode, value))
    s = np.log10([100.0, 1.0])
    np.testing.assert_allclose(cells.depth_t.numpy(), expected(s), rtol=1e-6)


def test_invalid_depth_mode_is_rejected():
    with pytest.raises(ValueError, match="t_mode"):
        DepthSpec("times", 2.0)


def test_empty_cells_are_refused_with_advice():
    counts = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="filter_cells"):
        tokenize_counts(counts, np.array([0, 1]))


def test_read_depth_target_sets_t_from_the_full_profile():
    full = sp.csr_matrix(np.array([[100.0, 300.0]]))
    thinned = sp.csr_matrix(np.array([[10.0, 30.0]]))
    cells = tokenize_counts(thinned, np.array([0, 1]), target_counts=full)
    assert cells.depth_t.item() == pytest.approx(np.log10(400))
    assert cells.depth_s.item() == pytest.approx(np.log10(40))
    assert cells.target is not None


def test_tokenization_never_builds_a_dense_cells_by_genes_matrix():
    # 5,000 cells x 19,264 genes would be 385 MB dense in float32
    x = sp.random(5000, TOKENS.N_GENES, density=0.002, format="csr", random_state=0,
                  dtype=np.float32) * 10 + sp.eye(5000, TOKENS.N_GENES, format="csr")  # fmt: skip
    x.data = np.ceil(x.data)
    tracemalloc.start()
    tokenize_counts(x, np.arange(TOKENS.N_GENES))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 40e6


def test_panel_tokenisation_equals_selecting_the_panel_after():
    """Emitting only the panel genes gives what the module would keep, depth from every gene."""
    from xtrimogene_sc.data._tokenize import panel_mask

    rng = np.random.default_rng(3)
    counts = sp.random(6, 40, density=0.4, format="csr", random_state=3,
                       data_rvs=lambda n: rng.integers(1, 9, n)).astype(np.float32)  # fmt: skip
    counts[:, 0] = 1  # every cell has a panel gene
    positions = np.arange(40) * 11
    mask = panel_mask(positions[::3])
    full = tokenize_counts(counts, positions, target_counts=counts)
    panel = tokenize_counts(counts, positions, target_counts=counts, panel=mask)
    expected = full.select_genes(torch.from_numpy(mask))
    for name in ("crow", "pos", "value", "depth_t", "depth_s"):
        assert torch.equal(getattr(panel, name), getattr(expected, name)), name
    assert torch.equal(panel.target.pos, expected.target.pos)
    assert panel.pos.numel() > 0  # panel genes were emitted
    assert bool((~torch.from_numpy(mask)[full.pos]).any())  # and others were left out
    assert panel_mask(None) is None
