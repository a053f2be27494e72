"""Model hyper-parameters as one frozen dataclass with named size presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, get_args

from xtrimogene_sc._constants import TOKENS

DecoderMode = Literal["full", "masked"]
ZeroMaskScope = Literal["observed", "vocabulary"]
ContrastiveView = Literal["sample", "thin"]
CellQuery = Literal["mlp", "tied"]
# fields whose value must be one of their Literal type's options
_CHOICES = {
    "contrastive_view": ContrastiveView,
    "cell_reconstruction_query": CellQuery,
    "zero_mask_scope": ZeroMaskScope,
    "decoder_mode": DecoderMode,
}


@dataclass(frozen=True)
class XTrimoGeneConfig:
    """Hyper-parameters of the asymmetric encoder-decoder.

    Attributes
    ----------
    encoder_dim, encoder_depth, encoder_heads
        Width, layers and heads of the exact-attention encoder (reference: 768, 12, 12).
    decoder_dim, decoder_depth, decoder_heads
        Width, layers and heads of the Performer decoder (reference: 512, 6, 8).
    ff_mult
        Feed-forward expansion factor of both stacks.
    encoder_dropout
        Dropout on the encoder's residual branches and feed-forward hidden layer (PyTorch's
        ``TransformerEncoderLayer`` default, 0.1).
    attention_dropout
        Dropout on the encoder's attention weights. ``TransformerEncoderLayer`` applies
        ``encoder_dropout`` there too; this package defaults to 0 because any attention dropout
        makes CPU attention fall back to a kernel that materialises the ``K x K`` score matrix
        (memory quadratic in the expressed genes, and several times slower).
    max_encoder_genes
        Training cap on a cell's encoder input (the reference configuration's
        ``mae_encoder_max_seq_len`` is 15,000). When more expressed genes survive masking, a
        random subset beyond the cap is masked as well: those genes are predicted instead of
        seen, so the cell still contributes every value to the loss. ``None`` disables the cap.
        Inference never drops genes.
    gradient_checkpointing
        Recompute each encoder and decoder block's activations in the backward pass instead of
        storing them: much less activation memory for about a third more compute.
    decoder_nb_features
        FAVOR+ random features per head; ``None`` means ``floor(d ln d)`` (266 for d = 64).
    feature_redraw_interval
        Redraw the decoder's random features every this many training steps.
    decoder_mode
        ``"full"`` decodes all vocabulary positions (the reference). ``"masked"`` decodes only the
        encoder tokens plus the masked positions (masked non-zeros and the sampled zeros), which
        cuts decoder work roughly by the sparsity of the data; unmasked zeros are then not seen.
    bin_num, bin_alpha
        Auto-discretization bins and residual weight (reference: 100, 1.0).
    mask_ratio_nonzero, mask_ratio_zero
        Masking probabilities for non-zero and zero genes (reference: 0.3, 0.03).
    zero_mask_scope
        Which zero genes can be masked and scored. ``"observed"``: only genes the data set
        measures, when the batch says which (training on an AnnData does); a gene the data set
        never measured is zero in every cell, and regressing that zero teaches nothing about the
        cell. ``"vocabulary"``: every vocabulary gene, as the reference (right for corpora where
        every gene is measured). Batches that carry no measured-gene mask (the streamed
        pretraining corpus) always use the whole vocabulary.
    use_depth_tokens
        Append the read-depth tokens T and S (scFoundation RDA) to every cell.
    seed
        Seed of the decoder's random-feature draws.
    input_positions
        Vocabulary positions of the genes the model reads (its gene panel), sorted; ``None``
        (default) reads every gene. Counts of other genes still count towards a cell's depth
        ``N`` (the values ``ln(1 + 1e4 c / N)`` and the T and S tokens), but those genes are never
        fed to the encoder, masked or scored. Small data sets train better on their highly
        variable genes (:class:`~xtrimogene_sc.model.TrainingRecipe` ``n_top_genes``).
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
        (a low effective rank). ``"tied"``: the query *is* the gene's own
        embedding (the table normalised to unit root-mean-square column norm, times one
        learned gain), and the pooled cell is centred and divided by one scalar spread.
        Distances between embeddings then follow distances between predicted profiles, as
        between principal components: the embedding becomes PCA-like. The per-gene offset is then a small
        network of the detached gene embedding. :doc:`/model` says what each choice scores.
    """

    encoder_dim: int = 768
    encoder_depth: int = 12
    encoder_heads: int = 12
    decoder_dim: int = 512
    decoder_depth: int = 6
    decoder_heads: int = 8
    ff_mult: int = 4
    encoder_dropout: float = 0.1
    attention_dropout: float = 0.0
    max_encoder_genes: int | None = 15_000
    gradient_checkpointing: bool = False
    decoder_nb_features: int | None = None
    feature_redraw_interval: int = 1000
    decoder_mode: DecoderMode = "full"
    bin_num: int = 100
    bin_alpha: float = 1.0
    mask_ratio_nonzero: float = 0.3
    mask_ratio_zero: float = 0.03
    zero_mask_scope: ZeroMaskScope = "observed"
    use_depth_tokens: bool = True
    seed: int = 0
    input_positions: tuple[int, ...] | None = None
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.1
    contrastive_view: ContrastiveView = "sample"
    cell_reconstruction_weight: float = 0.0
    cell_reconstruction_scaled: bool = False
    cell_reconstruction_query: CellQuery = "mlp"

    def __post_init__(self) -> None:
        if self.input_positions is not None:
            positions = tuple(int(p) for p in self.input_positions)
            if not positions:
                msg = "input_positions must name at least one gene (or be None for every gene)"
                raise ValueError(msg)
            if list(positions) != sorted(set(positions)):
                msg = "input_positions must be strictly increasing vocabulary positions"
                raise ValueError(msg)
            if positions[0] < 0 or positions[-1] >= TOKENS.N_GENES:
                msg = f"input_positions must lie in [0, {TOKENS.N_GENES}), got {positions[0]}..{positions[-1]}"
                raise ValueError(msg)
            object.__setattr__(self, "input_positions", positions)  # a JSON list becomes a tuple
        for side in ("encoder", "decoder"):
            dim, heads = getattr(self, f"{side}_dim"), getattr(self, f"{side}_heads")
            if dim <= 0 or heads <= 0 or dim % heads:
                msg = f"{side}_dim={dim} must be a positive multiple of {side}_heads={heads}"
                raise ValueError(msg)
        for name in (
            "mask_ratio_nonzero", "mask_ratio_zero", "encoder_dropout", "attention_dropout"
        ):  # fmt: skip
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
        if self.max_encoder_genes is not None and self.max_encoder_genes < 1:
            msg = f"max_encoder_genes must be a positive integer or None, got {self.max_encoder_genes}"
            raise ValueError(msg)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> XTrimoGeneConfig:
        """A named size (see :data:`~xtrimogene_sc.module.PRESETS`) with optional overrides."""
        if name not in PRESETS:
            msg = f"unknown preset {name!r}; choose one of {sorted(PRESETS)}"
            raise ValueError(msg)
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            msg = f"unknown XTrimoGeneConfig fields {unknown}; valid: {[f.name for f in fields(cls)]}"
            raise ValueError(msg)
        return replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> XTrimoGeneConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            msg = f"unknown XTrimoGeneConfig fields {sorted(unknown)}"
            raise ValueError(msg)
        return cls(**values)


PRESETS: dict[str, XTrimoGeneConfig] = {
    # trains on a laptop CPU in minutes
    "tiny": XTrimoGeneConfig(
        encoder_dim=64, encoder_depth=2, encoder_heads=4,
        decoder_dim=32, decoder_depth=1, decoder_heads=2,
        decoder_nb_features=16, bin_num=32,
    ),
    "small": XTrimoGeneConfig(
        encoder_dim=128, encoder_depth=4, encoder_heads=4,
        decoder_dim=64, decoder_depth=2, decoder_heads=4,
    ),
    "base": XTrimoGeneConfig(
        encoder_dim=256, encoder_depth=6, encoder_heads=8,
        decoder_dim=128, decoder_depth=3, decoder_heads=4,
    ),
    "large": XTrimoGeneConfig(
        encoder_dim=512, encoder_depth=8, encoder_heads=8,
        decoder_dim=256, decoder_depth=4, decoder_heads=4,
    ),
    # the released scFoundation / xTrimoGene 100M configuration
    "100m": XTrimoGeneConfig(),
}  # fmt: skip
