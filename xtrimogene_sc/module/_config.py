"""Model hyper-parameters: the architecture, with its pretraining objective, and size presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.module._objective_config import PretrainingObjective

DecoderMode = Literal["full", "masked"]


@dataclass(frozen=True)
class XTrimoGeneConfig:
    """Hyper-parameters of the asymmetric encoder-decoder: its architecture, and its objective.

    The architecture is the fields below; what pretraining asks of the model (masking, the
    optional cell-level losses) is the separate :class:`PretrainingObjective` in
    :attr:`objective`. Both are saved with a model. Objective fields may be given by name
    wherever a configuration is built (:meth:`preset`, :meth:`replace`, :meth:`from_dict`,
    ``XTrimoGene(..., contrastive_weight=1.0)``) and go to the objective.

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
    objective
        The pretraining objective (:class:`PretrainingObjective`; a dict is converted).
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
    gradient_checkpointing: bool = False
    decoder_nb_features: int | None = None
    feature_redraw_interval: int = 1000
    decoder_mode: DecoderMode = "full"
    bin_num: int = 100
    bin_alpha: float = 1.0
    use_depth_tokens: bool = True
    seed: int = 0
    input_positions: tuple[int, ...] | None = None
    objective: PretrainingObjective = field(default_factory=PretrainingObjective)

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
        for name in ("encoder_dropout", "attention_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                msg = f"{name}={value} must lie in [0, 1)"
                raise ValueError(msg)
        if self.decoder_mode not in get_args(DecoderMode):
            options = " or ".join(map(repr, get_args(DecoderMode)))
            msg = f"decoder_mode must be {options}, got {self.decoder_mode!r}"
            raise ValueError(msg)
        if isinstance(self.objective, dict):  # as read back from JSON
            object.__setattr__(self, "objective", PretrainingObjective.from_dict(self.objective))
        if not isinstance(self.objective, PretrainingObjective):
            msg = f"objective must be a PretrainingObjective, got {type(self.objective).__name__}"
            raise TypeError(msg)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> XTrimoGeneConfig:
        """A named size (see :data:`~xtrimogene_sc.module.PRESETS`) with optional overrides.

        Overrides may name architecture or objective fields.
        """
        if name not in PRESETS:
            msg = f"unknown preset {name!r}; choose one of {sorted(PRESETS)}"
            raise ValueError(msg)
        return PRESETS[name].replace(**overrides)

    def replace(self, **changes: Any) -> XTrimoGeneConfig:
        """A copy with ``changes``, each an architecture or an objective field."""
        architecture, objective = _split_fields(changes)
        if objective:
            architecture["objective"] = replace(self.objective, **objective)
        return replace(self, **architecture)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field, the objective as a nested dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> XTrimoGeneConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error.

        Dicts saved before the objective had its own class (objective fields at the top level)
        are read too.
        """
        values = dict(values)
        nested = values.pop("objective", None) or {}
        architecture, objective = _split_fields(values)
        return cls(
            **architecture, objective=PretrainingObjective.from_dict({**nested, **objective})
        )


def _split_fields(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Architecture and objective fields of ``values``; unknown names are refused."""
    architecture_names = {f.name for f in fields(XTrimoGeneConfig)} - {"objective"}
    objective_names = {f.name for f in fields(PretrainingObjective)}
    unknown = sorted(set(values) - architecture_names - objective_names - {"objective"})
    if unknown:
        msg = (
            f"unknown XTrimoGeneConfig fields {unknown}; valid: architecture "
            f"{sorted(architecture_names)}, objective {sorted(objective_names)}"
        )
        raise ValueError(msg)
    architecture = {k: v for k, v in values.items() if k not in objective_names}
    return architecture, {k: v for k, v in values.items() if k in objective_names}


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
