"""Reference mapping: attach a query AnnData to a trained model under a freezing policy.

scArches-style mapping adds new batch-specific weights to a conditional model and trains only
those. xTrimoGene has no batch covariates: its parameters live on the gene vocabulary, so any query
whose genes map to the vocabulary is already embedded in the reference's space by the unchanged
model. That is the default policy here (``freeze="all"``: nothing is trained; reference embeddings
stay valid). When the query comes from a very different protocol, ``freeze="layer_norm"`` adapts
only the LayerNorm scales and shifts (under 0.1% of the weights) by masked-value regression on the
query, which needs no labels; every other pretrained weight stays fixed. The adapted model defines a
slightly different space, so re-embed the reference with it before label transfer.

We do not add learned per-batch embeddings: a batch token would change the encoder's input
sequence, and it cannot be learned for the reference batches without retraining on the reference.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from torch import nn

from xtrimogene_sc.base._atomic import CONFIG_FILE
from xtrimogene_sc.base._saved import load_state_checked, read_meta

if TYPE_CHECKING:
    from anndata import AnnData

    from xtrimogene_sc.data import GeneAlignment

logger = logging.getLogger(__name__)

FreezePolicy = Literal["all", "layer_norm"]
_MAPPED_SETUP_ARGS = ("layer", "gene_symbols_key", "min_gene_overlap")


def apply_freeze(module: nn.Module, freeze: FreezePolicy) -> list[str]:
    """Set ``requires_grad`` by policy; returns the names of the parameters left trainable."""
    if freeze not in ("all", "layer_norm"):
        msg = f"freeze must be 'all' or 'layer_norm', got {freeze!r}"
        raise ValueError(msg)
    module.requires_grad_(False)
    if freeze == "layer_norm":
        for sub in module.modules():
            if isinstance(sub, nn.LayerNorm):
                sub.requires_grad_(True)
    return [name for name, p in module.named_parameters() if p.requires_grad]


class QueryMappingMixin:
    """Adds :meth:`load_query_data` to :class:`~xtrimogene_sc.XTrimoGene`."""

    @classmethod
    def load_query_data(
        cls,
        adata: AnnData,
        reference_model: Self | str | Path,
        *,
        freeze: FreezePolicy = "all",
        batch_key: str | None = None,
        labels_key: str | None = None,
        accelerator: str = "cpu",
    ) -> Self:
        """A copy of a trained model attached to ``adata`` (the query), weights frozen by policy.

        Parameters
        ----------
        adata
            Query cells with raw counts. If not yet set up, it is registered with the reference's
            ``layer``, ``gene_symbols_key`` and ``min_gene_overlap``.
        reference_model
            A trained :class:`~xtrimogene_sc.XTrimoGene` or a directory it was saved to. It is
            not modified.
        freeze
            ``"all"``: every weight frozen; the query is embedded by the unchanged model and no
            training is needed (or possible). ``"layer_norm"``: only LayerNorm weights train when
            ``train()`` is called on the returned model; call it with a small ``max_epochs``.
        batch_key, labels_key
            Optional query ``obs`` columns to register.
        accelerator
            Where to put the weights (``"cpu"``, ``"gpu"``).

        Returns
        -------
        The query model. ``model.freeze_policy_`` and ``model.trainable_parameters_`` record
        the policy and the names of the trainable parameters.
        """
        if freeze not in ("all", "layer_norm"):
            msg = f"freeze must be 'all' or 'layer_norm', got {freeze!r}"
            raise ValueError(msg)
        if isinstance(reference_model, str | Path):
            _setup_query(cls, adata, _saved_setup_args(reference_model), batch_key, labels_key)
            query = cls.load(reference_model, adata=adata, accelerator=accelerator)
            reference_alignment = None
        else:
            setup = reference_model.registry_.get("setup_args", {})
            _setup_query(cls, adata, setup, batch_key, labels_key)
            query = cls(adata, config=reference_model.config)
            load_state_checked(query.module, reference_model.module.state_dict())
            query.default_pooling = reference_model.default_pooling
            query.to_device(reference_model.device)
            reference_alignment = reference_model.alignment_
        query.freeze_policy_ = freeze
        query.trainable_parameters_ = apply_freeze(query.module, freeze)
        query.is_trained_ = freeze == "all"
        query.module.eval()
        _warn_gene_coverage(reference_alignment, query.alignment_)
        logger.info(
            "mapped query of %d cells; %d trainable parameter tensors (%s)",
            adata.n_obs, len(query.trainable_parameters_), freeze,
        )  # fmt: skip
        return query


def _saved_setup_args(dir_path: str | Path) -> dict[str, Any]:
    """The setup arguments a saved reference model was trained with (read before loading it)."""
    path = Path(dir_path) / CONFIG_FILE
    if not path.is_file():
        msg = (
            f"reference_model {str(dir_path)!r} is not a saved model directory (no {path.name} "
            "there); pass a trained XTrimoGene or the directory XTrimoGene.save wrote"
        )
        raise FileNotFoundError(msg)
    return dict(read_meta(path).get("setup_args", {}))


def _setup_query(
    cls: Any,
    adata: AnnData,
    reference_setup: dict[str, Any],
    batch_key: str | None,
    labels_key: str | None,
) -> None:
    """Register the query with the reference's count layer, symbols and overlap settings.

    A query that is already set up is left alone; a copy of a set-up AnnData (which carries the
    original's registration id) is set up anew.
    """
    try:
        if cls._get_most_recent_anndata_manager(adata) is not None:
            return
    except ValueError:  # a copy of another registered AnnData
        pass
    kwargs = {k: reference_setup[k] for k in _MAPPED_SETUP_ARGS if k in reference_setup}
    cls.setup_anndata(adata, batch_key=batch_key, labels_key=labels_key, **kwargs)


def _warn_gene_coverage(reference: GeneAlignment | None, query: GeneAlignment | None) -> None:
    """Warn when the query measures few of the genes the reference model was trained on."""
    if reference is None or query is None:
        return
    ref_genes = reference.observed_positions
    shared = int((ref_genes & query.observed_positions).sum())
    fraction = shared / max(int(ref_genes.sum()), 1)
    if fraction < 0.5:
        msg = (
            f"the query measures only {shared:,} of the {int(ref_genes.sum()):,} vocabulary genes "
            f"of the reference ({fraction:.0%}); unmeasured genes are read as zero expression, "
            "so query and reference embeddings may not be comparable"
        )
        warnings.warn(msg, UserWarning, stacklevel=4)
