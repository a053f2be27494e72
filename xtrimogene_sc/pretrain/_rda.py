"""Read-depth-aware (RDA) pretraining input: the cell itself or a down-sampled copy of it.

scFoundation feeds either the raw cell (then ``T = S``) or a lower-depth copy produced by a
hierarchical Bayesian down-sampling scheme (then ``T > S``) and always regresses the full,
normalised profile (spec §1.4). The exact hierarchy (its priors, the probability of not
down-sampling, a minimum depth) is in Supplementary Notes 9-10 of the paper, which could not be
read, so this module implements a documented stand-in:

1. with probability ``p_full`` a cell is fed unchanged (``T = S``);
2. otherwise a keep-fraction ``r`` is drawn log-uniformly from ``[min_fraction, max_fraction)``
   (every order of magnitude of depth loss equally likely: 1%-10% as often as 10%-100%) and each
   count is binomially thinned, ``c_in ~ Binomial(c, r)`` - the same thinning the paper uses to
   make its synthetic low-depth evaluation cells;
3. a thinned cell with fewer than ``min_counts`` counts left falls back to the full cell.

The model then sees ``S = log10(sum c_in)`` and ``T = log10(sum c)`` and regresses
``ln(1 + 1e4 c / sum c)`` (``tokenize_counts(..., target_counts=full)``).

Randomness is seeded from ``seed`` and a hash of the block's contents, so a block is augmented
the same way in every DataLoader worker, on every rank and after a resume.
"""

from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.data._tokenize import tokenize_counts

_IDENTITY = np.arange(TOKENS.N_GENES, dtype=np.int64)


class ReadDepthAugmentation:
    """Transform a block of vocabulary-aligned raw counts into an RDA minibatch.

    Parameters
    ----------
    p_full
        Probability that a cell is fed at full depth.
    min_fraction, max_fraction
        Range of the log-uniform keep-fraction of down-sampled cells.
    min_counts
        A down-sampled copy with fewer counts than this is replaced by the full cell.
    seed
        Base seed; combined with a hash of each block.

    Examples
    --------
    >>> from xtrimogene_sc.pretrain import ReadDepthAugmentation, StreamingCellDataset
    >>> dataset = StreamingCellDataset(source, batch_size=32, transform=ReadDepthAugmentation())  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        p_full: float = 0.5,
        min_fraction: float = 0.01,
        max_fraction: float = 1.0,
        min_counts: int = 1,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= p_full <= 1.0:
            msg = f"p_full must lie in [0, 1], got {p_full}"
            raise ValueError(msg)
        if not 0.0 < min_fraction <= max_fraction <= 1.0:
            msg = f"need 0 < min_fraction <= max_fraction <= 1, got {min_fraction}, {max_fraction}"
            raise ValueError(msg)
        self.p_full = p_full
        self.min_fraction = min_fraction
        self.max_fraction = max_fraction
        self.min_counts = min_counts
        self.seed = seed

    def __repr__(self) -> str:
        return (
            f"ReadDepthAugmentation(p_full={self.p_full}, min_fraction={self.min_fraction}, "
            f"max_fraction={self.max_fraction}, min_counts={self.min_counts}, seed={self.seed})"
        )

    def sample_fractions(self, n_cells: int, rng: np.random.Generator) -> np.ndarray:
        """Keep-fraction of every cell: 1 for full-depth cells, log-uniform otherwise."""
        full = rng.random(n_cells) < self.p_full
        low, high = np.log(self.min_fraction), np.log(self.max_fraction)
        fractions = np.exp(rng.uniform(low, high, size=n_cells))
        return np.where(full, 1.0, fractions)

    def downsample(
        self, counts: sp.csr_matrix, fractions: np.ndarray, rng: np.random.Generator
    ) -> sp.csr_matrix:
        """Binomially thin each row to ``fractions[row]`` of its counts.

        Non-integer counts are thinned on their integer part, the fractional part is scaled.
        Rows left with fewer than ``min_counts`` counts are returned unchanged.
        """
        counts = sp.csr_matrix(counts, dtype=np.float64, copy=True)
        per_entry = np.repeat(fractions, np.diff(counts.indptr))
        whole = np.floor(counts.data)
        thinned = rng.binomial(whole.astype(np.int64), per_entry).astype(np.float64)
        thinned += (counts.data - whole) * per_entry
        down = sp.csr_matrix((thinned, counts.indices, counts.indptr), shape=counts.shape)
        totals = np.asarray(down.sum(axis=1)).ravel()
        starved = np.flatnonzero(totals < self.min_counts)
        if starved.size:
            restore = np.isin(
                np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr)), starved
            )
            down.data[restore] = counts.data[restore]
        down.eliminate_zeros()
        return down

    def _rng(self, block: sp.csr_matrix) -> np.random.Generator:
        digest = hashlib.blake2b(digest_size=8)
        for array in (block.indptr, block.indices, block.data):
            digest.update(np.ascontiguousarray(array).tobytes())
        return np.random.default_rng([self.seed, int.from_bytes(digest.digest(), "little")])

    def __call__(self, block: sp.spmatrix) -> SparseCells:
        """Tokenize a ``(n, 19264)`` block: input possibly down-sampled, target the full profile."""
        block = sp.csr_matrix(block)
        if block.shape[1] != TOKENS.N_GENES:
            msg = (
                f"ReadDepthAugmentation expects counts aligned to the {TOKENS.N_GENES:,}-gene "
                f"vocabulary, got {block.shape[1]:,} columns"
            )
            raise ValueError(msg)
        rng = self._rng(block)
        fractions = self.sample_fractions(block.shape[0], rng)
        down = self.downsample(block, fractions, rng)
        return tokenize_counts(down, _IDENTITY, target_counts=block)
