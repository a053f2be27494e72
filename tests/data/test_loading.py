from __future__ import annotations

import numpy as np
import pytest

from xtrimogene_sc.data._datamodule import CellDataModule
from xtrimogene_sc.data._loading import LengthBucketBatchSampler


def _padding_fraction(batches, lengths):
    padded = sum(len(b) * lengths[b].max() for b in batches)
    return 1 - lengths.sum() / padded


def test_bucketed_batches_cover_every_cell_once_and_pad_less():
    lengths = np.random.default_rng(0).lognormal(7, 0.6, 5000).astype(int)
    sampler = LengthBucketBatchSampler(lengths, np.arange(5000), 32, seed=1)
    batches = [np.array(b) for b in sampler]
    assert sorted(np.concatenate(batches).tolist()) == list(range(5000))
    assert len(batches) == len(sampler)
    rng = np.random.default_rng(2)
    random_batches = np.array_split(rng.permutation(5000), len(batches))
    assert _padding_fraction(batches, lengths) < 0.5 * _padding_fraction(random_batches, lengths)


def test_sampler_order_is_deterministic_per_epoch():
    lengths = np.arange(100)
    a = LengthBucketBatchSampler(lengths, np.arange(100), 8, seed=3)
    b = LengthBucketBatchSampler(lengths, np.arange(100), 8, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first


def test_ranks_get_disjoint_equal_shares():
    lengths = np.ones(103, dtype=int)
    shares = [
        list(LengthBucketBatchSampler(lengths, np.arange(103), 10, rank=r, world_size=2))
        for r in (0, 1)
    ]
    assert len(shares[0]) == len(shares[1])  # ranks stay in lockstep
    cells = [{c for batch in share for c in batch} for share in shares]
    assert not cells[0] & cells[1]


def test_sampler_indices_map_back_to_the_split():
    indices = np.array([5, 9, 11, 40])
    sampler = LengthBucketBatchSampler(np.array([3, 1, 2, 9]), indices, 2, shuffle=False)
    assert list(sampler) == [[9, 11], [5, 40]]


def test_datamodule_split_and_batches(tiny_adata):
    dm = CellDataModule(tiny_adata.X, np.arange(tiny_adata.n_vars), batch_size=16, train_size=0.8)
    assert dm.n_train + dm.n_val == tiny_adata.n_obs
    assert not set(dm.train_idx) & set(dm.val_idx)
    batch = next(iter(dm.train_dataloader()))
    assert batch.n_cells == 16
    with pytest.raises(ValueError, match="train_size"):
        CellDataModule(tiny_adata.X, np.arange(tiny_adata.n_vars), train_size=0.0)


def test_token_budget_bounds_padded_tokens_and_keeps_batch_count_fixed():
    lengths = np.random.default_rng(0).lognormal(7, 0.8, 3000).astype(int) + 1
    sampler = LengthBucketBatchSampler(lengths, np.arange(3000), 64, max_tokens=20_000, seed=4)
    counts = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = [np.array(b) for b in sampler]
        counts.append(len(batches))
        assert sorted(np.concatenate(batches).tolist()) == list(range(3000))
        for b in batches:
            assert len(b) <= 64
            assert len(b) == 1 or len(b) * lengths[b].max() <= 20_000
    assert counts == [len(sampler)] * 3  # the trainer counts batches once
    # long cells get small batches, short ones large: memory follows tokens, not cells
    by_length = sorted((lengths[b].max(), len(b)) for b in batches)
    assert by_length[0][1] == 64
    assert by_length[-1][1] < 8


def test_a_cell_longer_than_the_budget_goes_alone():
    sampler = LengthBucketBatchSampler(np.array([5, 50_000, 6]), np.arange(3), 8, max_tokens=1000)
    assert sorted(map(sorted, sampler)) == [[0, 2], [1]]


def test_training_batches_carry_the_measured_genes(tiny_adata):
    import torch

    from xtrimogene_sc.data._loading import CellBatchDataset
    from xtrimogene_sc.module import XTrimoGeneConfig, XTrimoGeneModule

    var_to_position = np.arange(tiny_adata.n_vars) * 7  # 400 measured genes spread out
    batch = CellBatchDataset(tiny_adata.X, var_to_position)[list(range(16))]
    assert torch.equal(batch.observed.nonzero().ravel(), torch.from_numpy(var_to_position))
    measured = batch.observed
    for scope, outside in (("observed", False), ("vocabulary", True)):
        config = XTrimoGeneConfig.preset("tiny", decoder_mode="masked", zero_mask_scope=scope)
        out = XTrimoGeneModule(config)(batch, generator=torch.Generator().manual_seed(0))
        scored_zeros = out.positions[out.target == 0]
        assert bool((~measured[scored_zeros]).any()) is outside  # unmeasured zeros scored?
