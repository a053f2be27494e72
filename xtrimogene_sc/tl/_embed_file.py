"""Embed an h5ad file of any size into a copy of it, streaming (the ``embed`` command's engine)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import h5py
import numpy as np
from anndata.io import write_elem

from xtrimogene_sc._constants import DEFAULT_KEYS
from xtrimogene_sc.tl._embed import check_embedding_model

if TYPE_CHECKING:
    from xtrimogene_sc.model import XTrimoGene

logger = logging.getLogger(__name__)


def embed_h5ad(
    path: str | Path,
    model: XTrimoGene,
    *,
    output: str | Path,
    key_added: str = DEFAULT_KEYS.LATENT,
    genes_output: str | Path | None = None,
    genes: list[str] | None = None,
    gene_reduce: str | None = "mean",
    overwrite: bool = False,
    **kwargs: Any,
) -> Path:
    """Embed the cells of an ``.h5ad`` file and write a copy of it with the embedding in ``obsm``.

    The input is opened ``backed="r"`` and streamed in row chunks, so files larger than memory
    work; only the embedding (cells x d) is held. The output is written beside its final name and
    moved into place when complete, so it is either the old file or the new one, never half.

    Parameters
    ----------
    path
        The input ``.h5ad`` (raw counts in ``X`` or in ``layer=``).
    model
        The model that embeds, e.g. :meth:`~xtrimogene_sc.XTrimoGene.from_scfoundation`.
    output
        Path of the ``.h5ad`` to write: the input with ``obsm[key_added]`` added (and
        ``uns[key_added]['params']``). May be the input itself.
    key_added
        ``obsm`` key of the embedding.
    genes_output
        Optional HDF5 path for gene (decoder context) embeddings; see ``gene_reduce``.
    genes
        Vocabulary symbols whose gene embeddings to write (default: all 19,264).
    gene_reduce
        ``"mean"`` writes genes x d averaged over cells (datasets ``gene_embeddings`` and
        ``genes``); ``None`` writes cells x genes x d, streamed cell batch by cell batch.
    overwrite
        Replace an existing ``output`` (or ``genes_output``) other than the input, and an
        ``obsm[key_added]`` the input already holds. Without it both are refused before any
        cell is embedded, as are output folders that do not exist or cannot be written.
    **kwargs
        Passed to :meth:`~xtrimogene_sc.XTrimoGene.get_latent_representation` and
        :meth:`~xtrimogene_sc.XTrimoGene.get_gene_embeddings` (``pooling``, ``batch_size``,
        ``layer``, ``gene_symbols_key``, ``t_mode``, ``t_value``, ``input_type``, ``precision``,
        ``progress``).

    Returns
    -------
    The path written.
    """
    check_embedding_model(model)
    source, target = Path(path), Path(output)
    if not source.is_file():
        msg = f"{source}: no such .h5ad file"
        raise FileNotFoundError(msg)
    for out in (target, genes_output):
        if out is not None:
            _check_output(Path(out), source, overwrite=overwrite)
    kwargs["pooling"] = model._pooling_or_default(kwargs.get("pooling"))  # recorded in params
    backed = _open_backed(source)
    if key_added in backed.obsm and not overwrite:
        backed.file.close()
        msg = (
            f"{source} already holds obsm[{key_added!r}]; pass overwrite=True (--overwrite) to "
            "replace it, or another key_added (--obsm-key)"
        )
        raise FileExistsError(msg)
    try:
        gene_kwargs = {k: v for k, v in kwargs.items() if k != "pooling"}
        latent = model.get_latent_representation(backed, **kwargs)
        if genes_output is not None:
            _write_gene_embeddings(
                model, backed, Path(genes_output), genes, gene_reduce, gene_kwargs
            )
    finally:
        backed.file.close()
    params = {"model": model._model_summary_string, "source": str(source)}
    params.update({k: v for k, v in kwargs.items() if isinstance(v, str | int | float)})
    _write_copy_with_obsm(source, target, key_added, latent, params)
    logger.info("wrote %s with obsm[%r] (%d x %d)", target, key_added, *latent.shape)
    return target


def _check_output(out: Path, source: Path, *, overwrite: bool) -> None:
    """Refuse, before any work, an output that could not be written or would replace a file."""
    if out.is_dir():
        msg = f"{out} is a directory; give the path of the file to write"
        raise IsADirectoryError(msg)
    if out.exists() and not overwrite and out != source:
        msg = f"{out} already exists; pass overwrite=True (--overwrite) to replace it"
        raise FileExistsError(msg)
    folder = out.parent
    if not folder.is_dir():
        what = "is not a directory" if folder.exists() else "does not exist"
        msg = f"cannot write {out}: the folder {folder} {what}; create it first"
        raise FileNotFoundError(msg)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{out.name}.probe-"):
            pass
    except OSError as err:
        msg = f"cannot write {out}: the folder {folder} is not writable ({err.strerror})"
        raise PermissionError(msg) from err


def _open_backed(path: Path) -> ad.AnnData:
    try:
        return ad.read_h5ad(path, backed="r")
    except (OSError, KeyError, ValueError) as err:
        msg = f"{path} is not a readable .h5ad file ({type(err).__name__}: {err})"
        raise ValueError(msg) from err


def _write_gene_embeddings(
    model: XTrimoGene,
    backed: ad.AnnData,
    path: Path,
    genes: list[str] | None,
    reduce: str | None,
    kwargs: dict[str, Any],
) -> None:
    kwargs = {"batch_size": 8, **kwargs}
    if reduce is None:
        model.get_gene_embeddings(backed, genes=genes, reduce=None, out_file=path, **kwargs)
        return
    frame = model.get_gene_embeddings(backed, genes=genes, reduce=reduce, **kwargs)
    partial = path.parent / f".{path.name}.partial-{os.getpid()}"
    try:
        with h5py.File(partial, "w") as f:
            f["gene_embeddings"] = frame.to_numpy(dtype=np.float32)
            f["genes"] = np.asarray(frame.index, dtype="S")
            f.attrs["reduce"] = reduce
            f.attrs["n_cells"] = backed.n_obs
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _write_copy_with_obsm(
    source: Path, target: Path, key: str, latent: np.ndarray, params: dict[str, Any]
) -> None:
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"
    try:
        shutil.copyfile(source, partial)
        with h5py.File(partial, "r+") as f:
            for group, value in (("obsm", latent), ("uns", {"params": params})):
                if group not in f:
                    write_elem(f, group, {})
                if key in f[group]:
                    del f[group][key]
                write_elem(f[group], key, value)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
