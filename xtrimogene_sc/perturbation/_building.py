"""Building blocks of :class:`~xtrimogene_sc.XTrimoGenePerturbation`: backbone, gene features, module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data._vocab import GeneVocab
from xtrimogene_sc.module._module import XTrimoGeneModule
from xtrimogene_sc.module._pooling import Pooling, pooled_width
from xtrimogene_sc.perturbation._head import PerturbationHead, PerturbationModule
from xtrimogene_sc.perturbation._setup import GeneSpace, PerturbationSetup

if TYPE_CHECKING:
    from anndata import AnnData

    from xtrimogene_sc.model._model import XTrimoGene

GeneRepresentation = Literal["static", "context", "both"]


def build_module(
    backbone: XTrimoGeneModule,
    genes: GeneSpace,
    features: torch.Tensor | None,
    seen: list[str],
    *,
    gene_representation: str,
    n_trainable_layers: int,
    pooling: Pooling,
    hidden_dim: int,
    dropout: float,
    transfer_prob: float,
    interaction: bool = False,
) -> PerturbationModule:
    """Head and module for a backbone copy, the predicted genes and the seen members."""
    seen_ids = outputs = None
    if features is not None:
        seen_ids = torch.as_tensor(GeneVocab.default().positions(seen), dtype=torch.long)
        outputs = torch.as_tensor(genes.positions, dtype=torch.long)
    head = PerturbationHead(
        state_dim=pooled_width(backbone.config, pooling), n_genes=len(genes.positions),
        seen=len(seen), hidden_dim=hidden_dim, dropout=dropout, gene_features=features,
        seen_ids=seen_ids, output_positions=outputs, transfer_prob=transfer_prob,
        interaction=interaction,
    )  # fmt: skip
    return PerturbationModule(
        backbone, head, pooling=pooling, n_trainable_layers=n_trainable_layers
    ).to(next(backbone.parameters()).device)


def gene_features(
    backbone: XTrimoGene,
    adata: AnnData,
    setup: PerturbationSetup,
    genes: GeneSpace,
    representation: GeneRepresentation,
    context_cells: int,
) -> torch.Tensor:
    """Frozen gene representation ``(n_positions, d)``, standardised over the measured genes.

    The statistics come from the training data's genes only: the embeddings of genes that the
    backbone never saw expressed stay near their initial values and would dominate them.
    """
    parts = []
    if representation in ("static", "both"):
        parts.append(backbone.module.gene_embedding.weight.detach().float().cpu())
    if representation in ("context", "both"):
        names = adata.obs[setup.condition_key].astype(str).to_numpy()
        control = np.flatnonzero(names == setup.control)
        rng = np.random.default_rng(0)
        subset = adata[np.sort(rng.permutation(control)[:context_cells])]
        table = backbone.get_gene_embeddings(
            subset, reduce="mean", layer=setup.layer if setup.layer in adata.layers else None,
            gene_symbols_key=setup.gene_symbols_key, progress=False,
        )  # fmt: skip
        context = torch.zeros((TOKENS.N_POSITIONS, table.shape[1]))
        context[: TOKENS.N_GENES] = torch.as_tensor(np.asarray(table, dtype=np.float32))
        parts.append(context)
    features = []
    for part in parts:
        measured = part[torch.as_tensor(genes.positions)]
        features.append((part - measured.mean(dim=0)) / measured.std(dim=0).clamp_min(1e-6))
    return torch.cat(features, dim=1)
