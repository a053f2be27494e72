"""The registered batch as the pretraining read-out sees it (``batch_readout``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from xtrimogene_sc._constants import REGISTRY_KEYS


def batches_of(model: Any) -> int:
    """Number of batches registered with the model's AnnData (1 when no ``batch_key`` was)."""
    return int(model.summary_stats.n_batch)


def training_batch_codes(model: Any) -> np.ndarray | None:
    """Each cell's registered batch code, for the read-out's batch offsets; ``None`` without them.

    A query model (:meth:`~xtrimogene_sc.XTrimoGene.load_query_data`) trains without: the
    offsets describe the batches of the reference's data, not the query's.

    Raises
    ------
    ValueError
        The AnnData has more batches than the model's offsets cover (a model trained on other
        data): raised before training starts.
    """
    objective = model.config.objective
    has_offsets = objective.batch_readout and objective.n_batches > 1
    if not has_offsets or getattr(model, "freeze_policy_", None) is not None:
        return None
    codes = np.asarray(model.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
    codes = codes.astype(np.int64)
    if codes.size and codes.max() >= objective.n_batches:
        msg = (
            f"this model's read-out has offsets for {objective.n_batches} batches, but the AnnData "
            f"registers {batches_of(model)}: train it on the data it was built on, or build a new "
            "model on this AnnData (XTrimoGene(adata, ..., batch_readout=True))"
        )
        raise ValueError(msg)
    return codes
