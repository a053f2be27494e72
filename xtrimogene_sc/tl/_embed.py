"""``tl.embed``: write xTrimoGene cell embeddings into ``adata.obsm`` for scanpy."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from xtrimogene_sc._constants import DEFAULT_KEYS

if TYPE_CHECKING:
    from anndata import AnnData

    from xtrimogene_sc.model import XTrimoGene
    from xtrimogene_sc.module._pooling import Pooling

logger = logging.getLogger(__name__)


def check_embedding_model(model: Any) -> None:
    """Refuse anything that is not a model with ``get_latent_representation`` (e.g. a path)."""
    if not callable(getattr(model, "get_latent_representation", None)):
        msg = (
            f"model must be an XTrimoGene (e.g. xtg.XTrimoGene.load(path)), got "
            f"{type(model).__name__} {model!r:.60}"
        )
        raise TypeError(msg)


def embed(
    adata: AnnData,
    model: XTrimoGene,
    *,
    key_added: str = DEFAULT_KEYS.LATENT,
    pooling: Pooling | None = None,
    batch_size: int = 64,
    copy: bool = False,
    **kwargs: Any,
) -> AnnData | None:
    """Embed cells with a trained model so that scanpy can use them.

    Parameters
    ----------
    adata
        Cells x genes with raw counts (in memory or backed).
    model
        A trained :class:`~xtrimogene_sc.XTrimoGene`.
    key_added
        ``obsm`` key (and ``uns`` key for the parameters) to write.
    pooling
        Cell pooling, see :meth:`~xtrimogene_sc.XTrimoGene.get_latent_representation`;
        ``None`` (default): the model's :attr:`~xtrimogene_sc.XTrimoGene.default_pooling`
        (``"concat"``, or the recipe's for a model trained by a recipe).
    batch_size
        Cells per forward pass.
    copy
        Return a copy instead of writing into ``adata``.
    **kwargs
        Passed to :meth:`~xtrimogene_sc.XTrimoGene.get_latent_representation`
        (``layer``, ``gene_symbols_key``, ``t_mode``, ``t_value``, ``input_type``,
        ``progress``).

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``, with

    ``adata.obsm[key_added]``
        ``(n_obs, d)`` float32 cell embeddings; use ``sc.pp.neighbors(adata, use_rep=key_added)``.
    ``adata.uns[key_added]["params"]``
        The pooling, batch size and model summary used.

    Examples
    --------
    >>> import scanpy as sc
    >>> xtg.tl.embed(adata, model)  # doctest: +SKIP
    >>> sc.pp.neighbors(adata, use_rep="X_xtg")  # doctest: +SKIP
    """
    check_embedding_model(model)
    if not isinstance(key_added, str) or not key_added:
        msg = f"key_added must be a non-empty string (an obsm key), got {key_added!r}"
        raise ValueError(msg)
    start = time.perf_counter()
    pooling = model._pooling_or_default(pooling)  # the name recorded in uns
    adata = adata.copy() if copy else adata
    latent = model.get_latent_representation(
        adata, pooling=pooling, batch_size=batch_size, **kwargs
    )
    adata.obsm[key_added] = latent
    params = {"pooling": pooling, "batch_size": batch_size, "model": model._model_summary_string}
    params.update({k: v for k, v in kwargs.items() if isinstance(v, str | int | float)})
    adata.uns[key_added] = {"params": params}
    logger.info(
        "embedded %d cells in %.1fs, added obsm[%r] (%d dims)",
        adata.n_obs, time.perf_counter() - start, key_added, latent.shape[1],
    )  # fmt: skip
    return adata if copy else None
