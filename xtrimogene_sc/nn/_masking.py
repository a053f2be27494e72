"""Masking and token packing: MAE's keep/restore logic for data-dependent lengths.

xTrimoGene's encoder sees a different number of tokens per cell (the non-zero, unmasked genes plus
the depth tokens), so instead of MAE's fixed ``len_keep`` every function here works on flat
``(row, position)`` entry lists sorted by row then position, and :func:`pack_rows` turns them into
padded ``(B, K)`` tensors with a boolean ``valid`` mask (True = real token).
"""

from __future__ import annotations

import torch


def entry_rows(crow: torch.Tensor) -> torch.Tensor:
    """``(nnz,)`` row index of each entry of a CSR layout with row pointers ``crow``."""
    n_rows = crow.numel() - 1
    return torch.repeat_interleave(torch.arange(n_rows, device=crow.device), crow.diff())


def sample_masks(
    crow: torch.Tensor,
    n_positions: int,
    *,
    p_nonzero: float,
    p_zero: float,
    positions: torch.Tensor,
    keep_at_least_one: bool = True,
    candidates: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the pretraining masks.

    Parameters
    ----------
    crow, positions
        CSR row pointers ``(B + 1,)`` and vocabulary positions ``(nnz,)`` of the non-zero genes.
    n_positions
        Vocabulary length (zero genes are drawn from ``[0, n_positions)``).
    p_nonzero, p_zero
        Probability of masking a non-zero and a zero gene (0.3 and 0.03 in the reference).
    keep_at_least_one
        Never mask every non-zero gene of a cell (its encoder input would be empty).
    candidates
        Optional ``(n_positions,)`` bool: zero genes are only drawn among these positions
        (e.g. the genes a data set measures).

    Returns
    -------
    nonzero_masked
        ``(nnz,)`` bool, True where a non-zero gene is masked.
    zero_masked
        ``(B, n_positions)`` bool, True where a zero gene is masked.
    """
    device = positions.device
    n_cells = crow.numel() - 1
    rand = torch.rand(positions.numel(), device=device, generator=generator)
    nonzero_masked = rand < p_nonzero
    counts = crow.diff()
    rows = entry_rows(crow)
    if keep_at_least_one and positions.numel():
        kept = torch.zeros(n_cells, dtype=torch.long, device=device)
        kept.index_add_(0, rows, (~nonzero_masked).long())
        starved = (kept == 0) & (counts > 0)
        nonzero_masked[crow[:-1][starved]] = False  # unmask the first gene of starved cells
    if candidates is None:
        zero_masked = torch.rand(n_cells, n_positions, device=device, generator=generator) < p_zero
    else:  # draw for the candidate columns only: a panel is ~700 of 19,264 positions
        columns = candidates.to(device).nonzero().squeeze(1)
        zero_masked = torch.zeros(n_cells, n_positions, dtype=torch.bool, device=device)
        draw = torch.rand(n_cells, columns.numel(), device=device, generator=generator)
        zero_masked[:, columns] = draw < p_zero
    if positions.numel():
        zero_masked[rows, positions] = False
    return nonzero_masked, zero_masked


def cap_kept_entries(
    masked: torch.Tensor,
    crow: torch.Tensor,
    cap: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mask more entries so that at most ``cap`` entries per row stay unmasked.

    Parameters
    ----------
    masked
        ``(nnz,)`` bool, True where an entry is already masked.
    crow
        ``(B + 1,)`` CSR row pointers of the entries.
    cap
        Largest number of unmasked entries a row may keep.

    Returns
    -------
    ``masked`` with, in each row that kept more than ``cap`` entries, a uniformly random choice
    of the surplus masked as well (a new tensor; the input is unchanged).
    """
    n_rows = crow.numel() - 1
    rows = entry_rows(crow)
    kept = torch.zeros(n_rows, dtype=torch.long, device=crow.device)
    kept.index_add_(0, rows, (~masked).long())
    if not bool((kept > cap).any()):
        return masked
    score = torch.rand(masked.numel(), device=masked.device, generator=generator)
    # rank the unmasked entries of each row in random order; masked ones sort last
    order = torch.argsort(rows.double() * 4 + masked.double() * 2 + score.double())
    slot = torch.empty_like(rows)
    slot[order] = torch.arange(rows.numel(), device=rows.device) - crow[:-1][rows[order]]
    return masked | (slot >= cap)


def sort_entries(rows: torch.Tensor, positions: torch.Tensor, stride: int) -> torch.Tensor:
    """Permutation that orders entries by row, then by position."""
    return torch.argsort(rows * stride + positions, stable=True)


def pack_rows(
    rows: torch.Tensor,
    positions: torch.Tensor,
    payload: torch.Tensor,
    *,
    n_rows: int,
    pad_position: int,
    pad_to_multiple: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack row-sorted entries into padded ``(B, K, ...)`` tensors.

    Parameters
    ----------
    rows, positions
        ``(n,)`` entries sorted by row (and by position within a row).
    payload
        ``(n, ...)`` values carried by each entry (scalars or vectors).
    pad_position
        Position id written into padding slots.
    pad_to_multiple
        Round ``K`` up to a multiple of this (helps kernels pick fast paths).

    Returns
    -------
    positions
        ``(B, K)`` int64, ``pad_position`` at padding.
    payload
        ``(B, K, ...)``, zeros at padding.
    valid
        ``(B, K)`` bool, True for real entries.
    """
    device = rows.device
    counts = torch.bincount(rows, minlength=n_rows)
    k = int(counts.max()) if rows.numel() else 1
    k = max(1, -(-k // pad_to_multiple) * pad_to_multiple)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(rows.numel(), device=device) - start[rows]
    packed_pos = torch.full((n_rows, k), pad_position, dtype=torch.long, device=device)
    packed_pos[rows, slot] = positions
    packed = payload.new_zeros((n_rows, k, *payload.shape[1:]))
    packed[rows, slot] = payload
    valid = torch.zeros(n_rows, k, dtype=torch.bool, device=device)
    valid[rows, slot] = True
    return packed_pos, packed, valid
