"""The minibatch container: cells as sparse rows over vocabulary positions (pure torch)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from xtrimogene_sc.nn._masking import entry_rows


@dataclass
class SparseCells:
    """A minibatch of cells in CSR form over the 19,264 vocabulary positions.

    Attributes
    ----------
    crow
        ``(B + 1,)`` int64 row pointers.
    pos
        ``(nnz,)`` int64 vocabulary positions, strictly ascending within each row.
    value
        ``(nnz,)`` float32 model input values, ``ln(1 + 1e4 c / N)``.
    depth_t
        ``(B,)`` float32 target read depth token T (log10 counts).
    depth_s
        ``(B,)`` float32 source read depth token S (log10 counts of the input profile).
    target
        Optional regression target in the same layout (read-depth-aware pretraining feeds a
        down-sampled input and regresses the full profile). ``None`` means the input itself.
    observed
        Optional ``(19264,)`` bool: the vocabulary genes the data set measures. When given (and
        the model's ``zero_mask_scope`` is ``"observed"``), only measured genes are drawn as
        masked zeros; an unmeasured gene's zero says nothing about the cell.
    batch
        Optional ``(B,)`` int64 codes of each cell's registered batch
        (``setup_anndata(batch_key=...)``), carried when the objective reads them
        (``batch_readout``).
    """

    crow: torch.Tensor
    pos: torch.Tensor
    value: torch.Tensor
    depth_t: torch.Tensor
    depth_s: torch.Tensor
    target: SparseCells | None = None
    observed: torch.Tensor | None = None
    batch: torch.Tensor | None = None

    @property
    def n_cells(self) -> int:
        """Number of cells ``B``."""
        return self.crow.numel() - 1

    def row_ids(self) -> torch.Tensor:
        """``(nnz,)`` row index of each stored entry."""
        return entry_rows(self.crow)

    def to(self, device: torch.device | str) -> SparseCells:
        """Move every tensor to ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        target = None if self.target is None else self.target.to(device)
        return replace(self, **moved, target=target)

    def with_observed(self, observed: torch.Tensor | None) -> SparseCells:
        """The same cells carrying the data set's measured-gene mask."""
        return replace(self, observed=observed)

    def select_genes(self, allowed: torch.Tensor) -> SparseCells:
        """The same cells with only the entries at ``allowed`` positions (``(19264,)`` bool).

        Depth tokens, the measured-gene mask and row order are unchanged; the target (if any)
        is restricted the same way.
        """
        keep = allowed[self.pos]
        target = None if self.target is None else self.target.select_genes(allowed)
        return self._entries(keep, value=self.value[keep], target=target)

    def _entries(
        self, keep: torch.Tensor, **changes: torch.Tensor | SparseCells | None
    ) -> SparseCells:
        """The same cells with only the stored entries where ``keep`` ``(nnz,)`` is True.

        Row pointers and positions follow ``keep``; ``changes`` replace other fields (at least
        ``value``, already restricted to the kept entries).
        """
        per_row = torch.bincount(self.row_ids()[keep], minlength=self.n_cells)
        crow = torch.zeros_like(self.crow)
        crow[1:] = per_row.cumsum(0)
        return replace(self, crow=crow, pos=self.pos[keep], **changes)

    def downsampled(
        self, rate: torch.Tensor, generator: torch.Generator | None = None
    ) -> SparseCells:
        """The same cells at a lower read depth: each count kept with probability ``rate``.

        Counts are recovered from the values and the depth S (``c = (e^x - 1) N / 1e4``),
        binomially thinned with each cell's ``rate`` ``(B,)``, and turned back into values at the
        new depth ``rate * N`` (T = S = its log10); genes left with no count are dropped. The
        target, if any, is not carried over.
        """
        rows = self.row_ids()
        depth = torch.pow(10.0, self.depth_s.double())
        counts = torch.round(torch.expm1(self.value.double()) * depth[rows] / 1e4).float()
        kept = torch.binomial(counts, rate.float()[rows], generator=generator)
        new_depth = (depth * rate.double()).clamp_min(1.0)
        keep = kept > 0
        value = torch.log1p(1e4 * kept[keep].double() / new_depth[rows[keep]])
        log_depth = torch.log10(new_depth).to(self.depth_s.dtype)
        return self._entries(
            keep, value=value.to(self.value.dtype), depth_t=log_depth, depth_s=log_depth,
            target=None,
        )  # fmt: skip
