"""What pretraining asks of the model: masking and the optional cell-level losses.

Separate from the architecture (:class:`~xtrimogene_sc.XTrimoGeneConfig`), which holds it as
``config.objective``: the same architecture can be pretrained under another objective, and the
scFoundation checkpoints carry only the masking part of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

ZeroMaskScope = Literal["observed", "vocabulary"]
ContrastiveView = Literal["sample", "thin"]
CellQuery = Literal["mlp", "tied"]
# fields whose value must be one of their Literal type's options
_CHOICES = {
    "contrastive_view": ContrastiveView,
    "cell_reconstruction_query": CellQuery,
    "zero_mask_scope": ZeroMaskScope,
}


@dataclass(frozen=True)
class PretrainingObjective:
    """The pretraining objective: masked regression, and the optional cell-level losses.

    Attributes
    ----------
    max_encoder_genes
        Training cap on a cell's encoder input (the reference configuration's
        ``mae_encoder_max_seq_len`` is 15,000). When more expressed genes survive masking, a
        random subset beyond the cap is masked as well: those genes are predicted instead of
        seen, so the cell still contributes every value to the loss. ``None`` disables the cap.
        Inference never drops genes.
    mask_ratio_nonzero, mask_ratio_zero
        Masking probabilities for non-zero and zero genes (reference: 0.3, 0.03).
    zero_mask_scope
        Which zero genes can be masked and scored. ``"observed"``: only genes the data set
        measures, when the batch says which (training on an AnnData does); a gene the data set
        never measured is zero in every cell, and regressing that zero teaches nothing about the
        cell. ``"vocabulary"``: every vocabulary gene, as the reference (right for corpora where
        every gene is measured). Batches that carry no measured-gene mask (the streamed
        pretraining corpus) always use the whole vocabulary.
    contrastive_weight, contrastive_temperature, contrastive_view
        An optional cell-level loss added to the masked regression (weight 0: off, the
        reference objective). Each training step encodes a second view of every cell and
        matches the mean-pooled embeddings of the two views (through a small projection head,
        unused at inference) against the other cells of the minibatch: a symmetric InfoNCE at
        this temperature. The first view is what the masked regression's encoder reads; the
        second is ``"sample"``, an independent random sample of the expressed genes (the same
        share), or ``"thin"``, the cell binomially down-sampled to 10-100% of its read depth,
        which teaches the embedding to ignore depth. It costs one more encoder pass a step.
        Off by default: whether it helps depends on the data set (:doc:`/model`).
    cell_reconstruction_weight
        An optional cell-level loss added to the masked regression (0: off, the reference
        objective): from the mean-pooled encoder output of the masked cell alone, predict the
        value of every gene the model can score (its panel, the data set's measured genes), zero
        or not, as the scaled dot product of the batch-normalised cell vector with a query
        computed from each gene's embedding (plus a per-gene offset). The pooled embedding, the
        one :meth:`~xtrimogene_sc.XTrimoGene.get_latent_representation` returns with
        ``pooling="mean"``, thereby has to summarise the whole profile, as principal components
        do (scGPT's "GEPC" objective is of this kind). The batch normalisation matters: the
        masked regression alone lets the pooled vector shrink towards one point for every cell,
        and a read-out of raw means then learns little. It costs one ``B x G`` matrix product a
        step; the read-out is absent from the state dict when off.
    cell_reconstruction_scaled
        Score that read-out on standardised values, as scanpy's ``pp.scale`` does before PCA:
        each gene's value minus its mean, over its standard deviation (floored at 0.1), clipped
        at +-10. Unscaled, the few highly expressed genes dominate the squared error; scaled,
        every panel gene counts alike. The means and variances are running estimates over the
        training batches (the plain average of the first 100 batches, then an exponential one
        with weight 0.01), kept in the state dict beside the read-out.
    cell_reconstruction_query
        How that read-out forms each gene's query. ``"mlp"`` (default): a small network of the
        gene's embedding, applied to the batch-normalised cell, as described above. Each
        dimension of the pooled cell is rescaled on its own there, so the read-out leaves the
        embedding's geometry free, and on small data it settles on a few dominant directions
        (a low effective rank). ``"tied"``: the query *is* the gene's own embedding (the table
        normalised to unit root-mean-square column norm, times one learned gain), and the pooled cell is centred and divided by one scalar spread.
        Distances between embeddings then follow distances between predicted profiles, as
        between principal components: the embedding becomes PCA-like. The per-gene offset is
        then a small network of the detached gene embedding. :doc:`/model` says what each choice scores.
    batch_readout
        Give that read-out a learned offset per batch and gene (the batch registered with
        ``setup_anndata(batch_key=...)``), as scVI conditions its decoder on the batch: what
        sets the batches apart on average is then predicted from the batch itself, so the
        pooled cell vector need not carry it. Needs ``cell_reconstruction_weight > 0``. Only
        training reads the batch; embeddings never do. The offsets describe the batches of the
        data the model was trained on: a query model (``load_query_data``) trains without them.
        :doc:`/integration` says what it scores.
    n_batches
        Number of batches the read-out's offsets cover; set from the registered AnnData when
        the model is built (0 until then). With fewer than two there are no offsets.
    """

    mask_ratio_nonzero: float = 0.3
    mask_ratio_zero: float = 0.03
    zero_mask_scope: ZeroMaskScope = "observed"
    max_encoder_genes: int | None = 15_000
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.1
    contrastive_view: ContrastiveView = "sample"
    cell_reconstruction_weight: float = 0.0
    cell_reconstruction_scaled: bool = False
    cell_reconstruction_query: CellQuery = "mlp"
    batch_readout: bool = False
    n_batches: int = 0

    def __post_init__(self) -> None:
        for name in ("mask_ratio_nonzero", "mask_ratio_zero"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                msg = f"{name}={value} must lie in [0, 1)"
                raise ValueError(msg)
        if not self.contrastive_weight >= 0.0:
            msg = (
                f"contrastive_weight must be >= 0 (0 turns it off), got {self.contrastive_weight}"
            )
            raise ValueError(msg)
        if not self.cell_reconstruction_weight >= 0.0:
            msg = (
                "cell_reconstruction_weight must be >= 0 (0 turns it off), got "
                f"{self.cell_reconstruction_weight}"
            )
            raise ValueError(msg)
        if not self.contrastive_temperature > 0.0:
            msg = f"contrastive_temperature must be > 0, got {self.contrastive_temperature}"
            raise ValueError(msg)
        for name, choices in _CHOICES.items():  # the Literal types are the one list of options
            value, options = getattr(self, name), get_args(choices)
            if value not in options:
                msg = f"{name} must be {' or '.join(map(repr, options))}, got {value!r}"
                raise ValueError(msg)
        if self.batch_readout and not self.cell_reconstruction_weight > 0:
            msg = (
                "batch_readout conditions the whole-profile read-out on the batch: set "
                "cell_reconstruction_weight > 0 too (SMALL_DATA_RECIPE uses 10)"
            )
            raise ValueError(msg)
        if (
            isinstance(self.n_batches, bool)
            or not isinstance(self.n_batches, int)
            or self.n_batches < 0
        ):
            msg = f"n_batches must be a non-negative integer, got {self.n_batches!r}"
            raise ValueError(msg)
        if self.max_encoder_genes is not None and self.max_encoder_genes < 1:
            msg = f"max_encoder_genes must be a positive integer or None, got {self.max_encoder_genes}"
            raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PretrainingObjective:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            msg = f"unknown PretrainingObjective fields {unknown}"
            raise ValueError(msg)
        return cls(**values)
