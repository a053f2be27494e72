from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data import GeneVocab
from xtrimogene_sc.data._tokenize import align_rows, tokenize_counts
from xtrimogene_sc.datasets import synthetic_counts
from xtrimogene_sc.module import XTrimoGeneModule
from xtrimogene_sc.pretrain import ReadDepthAugmentation

IDENTITY = np.arange(TOKENS.N_GENES)


@pytest.fixture(scope="module")
def block() -> sp.csr_matrix:
    adata = synthetic_counts(n_obs=400, n_vars=400, density=0.2, seed=3)
    with pytest.warns(UserWarning, match="vocabulary genes"):
        alignment = GeneVocab.default().align(adata)
    return align_rows(adata.X, alignment.var_to_position)


def _rows(cells, i):
    a, b = int(cells.crow[i]), int(cells.crow[i + 1])
    return cells.pos[a:b].numpy(), cells.value[a:b].numpy()


def test_tokenize_counts_depth_tokens_follow_input_and_target() -> None:
    full = sp.csr_matrix(np.array([[4.0, 0, 6], [1, 1, 8]]))
    down = sp.csr_matrix(np.array([[1.0, 0, 1], [0, 1, 0]]))
    cells = tokenize_counts(down, np.array([0, 1, 2]), target_counts=full)
    np.testing.assert_allclose(cells.depth_s.numpy(), np.log10([2.0, 1.0]), rtol=1e-6)
    np.testing.assert_allclose(cells.depth_t.numpy(), np.log10([10.0, 10.0]), rtol=1e-6)
    np.testing.assert_allclose(cells.target.value.numpy(), np.log1p(1e4 * np.array([4, 6, 1, 1, 8]) / 10), rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(cells.value.numpy(), np.log1p(1e4 * np.array([0.5, 0.5, 1.0])), rtol=1e-6)  # fmt: skip


def test_rda_statistics(block: sp.csr_matrix) -> None:
    rda = ReadDepthAugmentation(p_full=0.5, min_fraction=0.01, seed=0)
    cells = rda(block)
    full_totals = np.asarray(block.sum(axis=1)).ravel()
    t, s = cells.depth_t.numpy(), cells.depth_s.numpy()
    # T is the full depth, S the fed depth, never above it
    np.testing.assert_allclose(t, np.log10(full_totals), rtol=1e-6)
    assert np.all(s <= t + 1e-6)
    down = s < t - 1e-6
    assert 0.35 < down.mean() < 0.65  # p_full = 0.5 (a few thinned cells fall back to full)
    # log-uniform keep-fraction in [0.01, 1): mean log10 ratio about -1
    assert -1.4 < float(np.mean(s[down] - t[down])) < -0.6
    # binomial thinning at a fixed rate keeps that share of the counts on average
    fixed = ReadDepthAugmentation(p_full=0.0, min_fraction=0.1, max_fraction=0.1, seed=0)(block)
    kept = 10.0 ** (fixed.depth_s.numpy() - fixed.depth_t.numpy())
    assert abs(float(kept.mean()) - 0.1) < 0.01
    # the regression target is exactly the full profile
    reference = tokenize_counts(block, IDENTITY)
    assert torch.equal(cells.target.crow, reference.crow)
    assert torch.equal(cells.target.pos, reference.pos)
    assert torch.equal(cells.target.value, reference.value)
    # the input is a sub-profile of the cell; full-depth cells are fed unchanged
    for i in range(0, block.shape[0], 7):
        pos_in, val_in = _rows(cells, i)
        pos_full, val_full = _rows(reference, i)
        assert set(pos_in) <= set(pos_full)
        if not down[i]:
            np.testing.assert_array_equal(pos_in, pos_full)
            np.testing.assert_allclose(val_in, val_full, rtol=1e-6)


def test_rda_is_deterministic_per_block_and_seed(block: sp.csr_matrix) -> None:
    a = ReadDepthAugmentation(seed=1)(block)
    b = ReadDepthAugmentation(seed=1)(block.copy())
    c = ReadDepthAugmentation(seed=2)(block)
    assert torch.equal(a.depth_s, b.depth_s)
    assert torch.equal(a.value, b.value)
    assert not torch.equal(a.depth_s, c.depth_s)


def test_rda_empty_downsample_falls_back_to_full_cell() -> None:
    rows = np.repeat(np.arange(50), 2)
    cols = np.tile([10, 20], 50)
    full = sp.csr_matrix((np.ones(100), (rows, cols)), shape=(50, TOKENS.N_GENES))
    rda = ReadDepthAugmentation(p_full=0.0, min_fraction=0.01, max_fraction=0.01, seed=0)
    cells = rda(full)  # thinning 2 counts at 1% leaves nothing: every cell is fed in full
    np.testing.assert_allclose(cells.depth_s.numpy(), np.log10(2.0), rtol=1e-6)
    assert torch.equal(cells.depth_s, cells.depth_t)
    assert cells.pos.numel() == 100
    strict = ReadDepthAugmentation(p_full=0.0, min_fraction=0.5, max_fraction=0.5, min_counts=100)
    big = sp.csr_matrix(full * 60)  # 120 counts per cell, halved to ~60 < 100: fall back
    assert torch.equal(strict(big).depth_s, strict(big).depth_t)


def test_rda_non_integer_counts_and_bad_input() -> None:
    full = sp.random(20, TOKENS.N_GENES, density=0.01, format="csr", random_state=0) * 7.5
    full.data += 0.5
    cells = ReadDepthAugmentation(p_full=0.0, seed=0)(full)
    assert np.all(cells.depth_s.numpy() <= cells.depth_t.numpy() + 1e-6)
    assert np.all(np.isfinite(cells.value.numpy()))
    with pytest.raises(ValueError, match="19,264-gene vocabulary"):
        ReadDepthAugmentation()(sp.csr_matrix((3, 100)))
    with pytest.raises(ValueError, match="p_full"):
        ReadDepthAugmentation(p_full=1.5)
    with pytest.raises(ValueError, match="min_fraction"):
        ReadDepthAugmentation(min_fraction=0.0)


def test_rda_batch_trains_the_module(block: sp.csr_matrix, tiny_config) -> None:
    cells = ReadDepthAugmentation(seed=0)(block[:32])
    module = XTrimoGeneModule(tiny_config)
    out = module(cells)
    assert torch.isfinite(out.loss)
    assert out.n_masked > 0
    out.loss.backward()
    assert module.value_embedding.bin_table.weight.grad is not None
