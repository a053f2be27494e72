"""``tl.annotate``: transfer cell-type labels from a labelled reference through the embedding."""

from __future__ import annotations

import logging
import time
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from xtrimogene_sc._constants import DEFAULT_KEYS
from xtrimogene_sc.data._labels import UNKNOWN, usable_labels
from xtrimogene_sc.tl._probe import EmbeddingProbe

if TYPE_CHECKING:
    from anndata import AnnData

    from xtrimogene_sc.model import XTrimoGene, XTrimoGeneClassifier

logger = logging.getLogger(__name__)


def annotate(
    adata: AnnData,
    *,
    reference: AnnData | None = None,
    labels_key: str | None = None,
    model: XTrimoGene | XTrimoGeneClassifier | None = None,
    method: Literal["knn", "logreg"] = "knn",
    use_rep: str | None = None,
    n_neighbors: int = 15,
    unknown_threshold: float = 0.5,
    min_cells_per_label: int = 2,
    min_gene_overlap: float = 0.5,
    calibrate: bool = True,
    key_added: str = DEFAULT_KEYS.LABEL,
    batch_size: int = 64,
    copy: bool = False,
    **embed_kwargs: Any,
) -> AnnData | None:
    """Annotate cells by label transfer from a labelled reference.

    Reference and query are embedded with the same model (or an existing ``obsm`` key is used),
    a probe is fitted on the reference embeddings and predicts calibrated class probabilities for
    the query. Cells whose highest probability is below ``unknown_threshold`` are called
    ``"Unknown"``. With a fine-tuned :class:`~xtrimogene_sc.model.XTrimoGeneClassifier` as
    ``model`` no reference is needed: its own (calibrated) probabilities are used.

    Parameters
    ----------
    adata
        Query cells: raw counts, or an ``obsm[use_rep]`` embedding.
    reference
        Labelled reference cells, embedded the same way as the query.
    labels_key
        ``reference.obs`` column with the labels. Cells with a missing (NaN) or ``"Unknown"``
        label are ignored with a warning.
    model
        A trained :class:`~xtrimogene_sc.XTrimoGene` (embeds both) or a fine-tuned
        :class:`~xtrimogene_sc.model.XTrimoGeneClassifier`. Not needed with ``use_rep``.
    method
        ``"knn"``: distance-weighted votes of the nearest reference cells; ``"logreg"``:
        logistic regression on standardised embeddings. See
        :class:`~xtrimogene_sc.tl.EmbeddingProbe`.
    use_rep
        ``obsm`` key present in both ``adata`` and ``reference`` (e.g. ``"X_xtg"`` from
        :func:`~xtrimogene_sc.tl.embed`); used instead of running the model.
    n_neighbors
        Neighbours for ``method="knn"``.
    unknown_threshold
        Cells whose calibrated confidence is below this are labelled ``"Unknown"``; 0 disables.
    min_cells_per_label
        Reference labels with fewer cells are dropped, with a warning naming them: one cell
        cannot be held out for calibration nor outvote noise among its neighbours.
    min_gene_overlap
        Required fraction of the query's vocabulary genes also measured in the reference.
        Embeddings computed from different genes are not comparable.
    calibrate
        Fit a temperature on 20% of the reference (stratified) so that confidences match
        accuracies; it never changes the predicted label.
    key_added
        ``obs`` key of the labels; also the prefix of the other keys written.
    batch_size
        Cells per forward pass when embedding.
    copy
        Return a copy instead of writing into ``adata``.
    **embed_kwargs
        Passed to :meth:`~xtrimogene_sc.XTrimoGene.get_latent_representation` for both data
        sets (``pooling``, ``layer``, ``gene_symbols_key``, ``progress``, ...).

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``, with

    ``adata.obs[key_added]``
        Categorical predicted label, ``"Unknown"`` below the confidence threshold.
    ``adata.obs[f"{key_added}_confidence"]``
        Calibrated probability of the predicted class.
    ``adata.obsm[f"{key_added}_probabilities"]``
        ``(n_obs, n_classes)`` calibrated probabilities; the column order is
        ``adata.uns[key_added]["params"]["classes"]``.
    ``adata.uns[key_added]["params"]``
        Method, threshold, classes, temperature and the labels dropped from the reference.

    Raises
    ------
    ValueError
        Missing labels column or fewer than two usable labels, too little gene overlap between
        query and reference, non-count values (e.g. NaN) in either data set, a missing or
        non-finite ``obsm[use_rep]``.

    Examples
    --------
    >>> xtg.tl.annotate(query, reference=ref, labels_key="cell_type", model=model)  # doctest: +SKIP
    >>> query.obs["xtg_label"].value_counts()  # doctest: +SKIP
    """
    start = time.perf_counter()
    if not 0.0 <= unknown_threshold <= 1.0:
        msg = f"unknown_threshold must lie in [0, 1], got {unknown_threshold}"
        raise ValueError(msg)
    adata = adata.copy() if copy else adata
    from xtrimogene_sc.annotation._model import XTrimoGeneClassifier

    if isinstance(model, XTrimoGeneClassifier):
        try:
            probabilities = model.predict_proba(adata, batch_size=batch_size, **embed_kwargs)
        except ValueError as err:
            msg = f"cannot classify the query AnnData: {err}"
            raise ValueError(msg) from err
        classes = np.asarray(model.classes_)
        params: dict[str, Any] = {"method": "classifier", "temperature": model.temperature_}
    else:
        if reference is None or labels_key is None:
            msg = "pass reference= (a labelled AnnData) and labels_key= (its obs column)"
            raise ValueError(msg)
        keep, labels, dropped = usable_labels(
            reference.obs, labels_key, min_cells=min_cells_per_label
        )
        ref_emb, query_emb = _embeddings(
            adata, reference, model, use_rep=use_rep, min_gene_overlap=min_gene_overlap,
            batch_size=batch_size, **embed_kwargs,
        )  # fmt: skip
        probe = EmbeddingProbe(method, n_neighbors=n_neighbors, calibrate=calibrate)
        probe.fit(ref_emb[keep], labels)
        probabilities = probe.predict_proba(query_emb)
        classes = probe.classes_
        params = {
            "method": method, "labels_key": labels_key, "n_neighbors": n_neighbors,
            "use_rep": use_rep or "model", "temperature": probe.temperature_,
            "calibrated": probe.calibrated_, "n_reference_cells": int(keep.sum()),
            "dropped_labels": dropped,
        }  # fmt: skip
    _write(adata, probabilities, classes, unknown_threshold, key_added, params)
    logger.info(
        "annotated %d cells with %d labels in %.1fs (%d Unknown), added obs[%r]",
        adata.n_obs, len(classes), time.perf_counter() - start,
        int((adata.obs[key_added] == UNKNOWN).sum()), key_added,
    )  # fmt: skip
    return adata if copy else None


def _embeddings(
    adata: AnnData,
    reference: AnnData,
    model: XTrimoGene | None,
    *,
    use_rep: str | None,
    min_gene_overlap: float,
    batch_size: int,
    **embed_kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference and query embeddings, from ``obsm[use_rep]`` or from the model."""
    if use_rep is not None:
        ref_emb, query_emb = (
            _from_obsm(reference, use_rep, "reference"),
            _from_obsm(adata, use_rep, "query"),
        )
        if ref_emb.shape[1] != query_emb.shape[1]:
            msg = (
                f"obsm[{use_rep!r}] has {ref_emb.shape[1]} dimensions in the reference but "
                f"{query_emb.shape[1]} in the query; embed both with the same model and pooling"
            )
            raise ValueError(msg)
        return ref_emb, query_emb
    if model is None:
        msg = (
            "pass model= (a trained XTrimoGene) or use_rep= naming an obsm key present in both "
            "the query and the reference (e.g. 'X_xtg' written by xtg.tl.embed)"
        )
        raise ValueError(msg)
    check_gene_overlap(
        adata, reference, min_overlap=min_gene_overlap,
        gene_symbols_key=embed_kwargs.get("gene_symbols_key"),
    )  # fmt: skip
    embed_kwargs.setdefault("progress", False)
    out = []
    for role, data in (("reference", reference), ("query", adata)):
        try:
            out.append(
                model.get_latent_representation(data, batch_size=batch_size, **embed_kwargs)
            )
        except ValueError as err:
            msg = f"cannot embed the {role} AnnData: {err}"
            raise ValueError(msg) from err
    return out[0], out[1]


def _from_obsm(adata: AnnData, key: str, role: str) -> np.ndarray:
    if key not in adata.obsm:
        msg = (
            f"obsm[{key!r}] is missing in the {role}; run xtg.tl.embed(adata, model, "
            f"key_added={key!r}) on both data sets, or pass model= and use_rep=None"
        )
        raise ValueError(msg)
    values = np.asarray(adata.obsm[key], dtype=np.float64)
    if not np.isfinite(values).all():
        msg = f"obsm[{key!r}] of the {role} contains NaN or infinite values; re-embed the cells"
        raise ValueError(msg)
    return values


def check_gene_overlap(
    adata: AnnData,
    reference: AnnData,
    *,
    min_overlap: float = 0.5,
    gene_symbols_key: str | None = None,
) -> float:
    """Share of the query's vocabulary genes that the reference also measures.

    Parameters
    ----------
    adata
        The query.
    reference
        The labelled reference.
    min_overlap
        Raise a ``ValueError`` below this share. A warning is issued when, conversely, the query
        measures less than this share of the reference's genes (the query's embeddings then see
        fewer genes than the reference's).
    gene_symbols_key
        ``var`` column with gene symbols in both data sets (default: ``var_names``).

    Returns
    -------
    The share, between 0 and 1.
    """
    from xtrimogene_sc.data import GeneVocab

    vocab = GeneVocab.default()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coverage warnings are repeated when embedding
        query = vocab.align(adata, gene_symbols_key=gene_symbols_key, min_overlap=0, min_genes=0)
        ref = vocab.align(reference, gene_symbols_key=gene_symbols_key, min_overlap=0, min_genes=0)
    shared = int((query.observed_positions & ref.observed_positions).sum())
    n_query, n_ref = query.n_matched_positions, ref.n_matched_positions
    fraction = shared / max(n_query, 1)
    if fraction < min_overlap:
        msg = (
            f"the reference measures only {shared:,} of the query's {n_query:,} vocabulary genes "
            f"({fraction:.0%}; required: {min_overlap:.0%}). Embeddings computed from different "
            "genes are not comparable: use a reference measured on a similar gene panel, check "
            "that both use gene symbols (gene_symbols_key=...), or subset both to their shared "
            "genes before annotating."
        )
        raise ValueError(msg)
    if shared / max(n_ref, 1) < min_overlap:
        msg = (
            f"the query measures only {shared:,} of the reference's {n_ref:,} vocabulary genes; "
            "reference embeddings see genes the query lacks. Subsetting the reference to the "
            "shared genes (reference[:, shared]) usually transfers labels better."
        )
        warnings.warn(msg, UserWarning, stacklevel=3)
    return fraction


def _write(
    adata: AnnData,
    probabilities: np.ndarray,
    classes: np.ndarray,
    threshold: float,
    key_added: str,
    params: dict[str, Any],
) -> None:
    best = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(best)), best]
    labels = np.asarray(classes, dtype=object)[best]
    labels[confidence < threshold] = UNKNOWN
    categories = [str(c) for c in classes] + ([UNKNOWN] if (labels == UNKNOWN).any() else [])
    adata.obs[key_added] = pd.Categorical(labels, categories=categories)
    adata.obs[f"{key_added}_confidence"] = confidence.astype(np.float32)
    adata.obsm[f"{key_added}_probabilities"] = probabilities.astype(np.float32)
    params = {
        **params,
        "unknown_threshold": threshold,
        "classes": [str(c) for c in classes],
        "probabilities_key": f"{key_added}_probabilities",
    }
    adata.uns[key_added] = {"params": params}
