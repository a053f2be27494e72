from __future__ import annotations

import torch

from xtrimogene_sc.nn import pack_rows, sample_masks


def _csr(lengths, n_positions=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = [torch.randperm(n_positions, generator=g)[:n].sort().values for n in lengths]
    crow = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    return crow, torch.cat(pos)


def test_mask_rates_match_configuration():
    crow, pos = _csr([200] * 50, n_positions=2000)
    nz, zero = sample_masks(crow, 2000, p_nonzero=0.3, p_zero=0.03, positions=pos,
                            generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert abs(nz.float().mean().item() - 0.3) < 0.02
    n_zero_positions = 50 * 2000 - pos.numel()
    assert abs(zero.sum().item() / n_zero_positions - 0.03) < 0.005


def test_zero_mask_never_hits_expressed_genes():
    crow, pos = _csr([300, 10, 450], n_positions=500)
    _, zero = sample_masks(crow, 500, p_nonzero=0.3, p_zero=0.9, positions=pos)
    rows = torch.repeat_interleave(torch.arange(3), crow.diff())
    assert not zero[rows, pos].any()


def test_every_cell_keeps_a_gene_when_asked():
    crow, pos = _csr([1] * 200, n_positions=50)
    nz, _ = sample_masks(crow, 50, p_nonzero=0.99, p_zero=0.0, positions=pos,
                         keep_at_least_one=True)  # fmt: skip
    assert not nz.any()


def test_pack_rows_matches_dense_reference():
    rows = torch.tensor([0, 0, 2, 2, 2])
    positions = torch.tensor([3, 9, 1, 4, 7])
    payload = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    packed_pos, packed, valid = pack_rows(rows, positions, payload, n_rows=3, pad_position=99)
    assert packed_pos.tolist() == [[3, 9, 99], [99, 99, 99], [1, 4, 7]]
    assert packed.tolist() == [[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [3.0, 4.0, 5.0]]
    assert valid.tolist() == [[True, True, False], [False] * 3, [True] * 3]


def test_pack_rows_pads_to_multiple_and_carries_vectors():
    rows = torch.tensor([0, 1, 1])
    payload = torch.arange(6.0).view(3, 2)
    _, packed, valid = pack_rows(rows, torch.tensor([0, 1, 2]), payload, n_rows=2,
                                 pad_position=-1, pad_to_multiple=4)  # fmt: skip
    assert packed.shape == (2, 4, 2)
    assert valid.sum() == 3
    assert packed[1, 1].tolist() == [4.0, 5.0]


def test_cap_masks_a_random_surplus_only_in_rows_over_the_cap():
    from xtrimogene_sc.nn._masking import cap_kept_entries

    crow = torch.tensor([0, 10, 13, 30])  # rows of 10, 3 and 17 entries
    masked = torch.zeros(30, dtype=torch.bool)
    masked[[0, 1, 13, 14]] = True  # row 0 keeps 8, row 2 keeps 15
    g = torch.Generator().manual_seed(0)
    capped = cap_kept_entries(masked, crow, 5, generator=g)
    kept = [int((~capped[a:b]).sum()) for a, b in ((0, 10), (10, 13), (13, 30))]
    assert kept == [5, 3, 5]
    assert capped[masked].all()  # what was masked stays masked
    other = cap_kept_entries(masked, crow, 5, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(capped, other)  # the surplus is a random choice
    assert cap_kept_entries(masked, crow, 20) is masked  # nothing over the cap: unchanged


def test_zero_masks_are_drawn_only_among_candidate_genes():
    crow = torch.tensor([0, 2, 3])
    positions = torch.tensor([1, 5, 7])
    candidates = torch.zeros(50, dtype=torch.bool)
    candidates[:10] = True
    _, zero_masked = sample_masks(
        crow, 50, p_nonzero=0.3, p_zero=0.9, positions=positions, candidates=candidates,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert not zero_masked[:, 10:].any()  # never outside the measured genes
    assert zero_masked[:, :10].sum() > 10  # p=0.9 over ~8 unexpressed measured genes a cell
    assert not zero_masked[0, [1, 5]].any()  # expressed genes are not zeros
    assert not zero_masked[1, 7]


def test_zero_mask_rate_among_candidates_matches_configuration():
    # only the candidate columns are drawn (a panel of 700 of 2,000 positions here)
    crow, pos = _csr([100] * 50, n_positions=2000)
    candidates = torch.zeros(2000, dtype=torch.bool)
    candidates[:700] = True
    _, zero = sample_masks(crow, 2000, p_nonzero=0.3, p_zero=0.03, positions=pos,
                           candidates=candidates, generator=torch.Generator().manual_seed(0))  # fmt: skip
    n_candidate_zeros = 50 * 700 - int((pos < 700).sum())
    assert abs(zero.sum().item() / n_candidate_zeros - 0.03) < 0.005
    assert not zero[:, 700:].any()
