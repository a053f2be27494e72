from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from xtrimogene_sc.data._vocab import GeneVocab

_PROGRAM_BOOST = 8.0
_MEAN_EXTRA_COUNT = 2.0


def synthetic_counts(
    *,
    n_obs: int = 300,
    n_vars: int = 400,
    n_labels: int = 3,
    n_batches: int = 2,
    density: float = 0.1,
    seed: int = 0,
) -> AnnData:
    """Small labelled sparse count matrix with real vocabulary gene symbols, for tests and tutorials.

    Each label has its own gene program (a disjoint set of genes that are far more often detected
    and more highly expressed) and its own typical depth; each batch rescales genes mildly; per-cell
    library sizes are log-normal. The output is fully determined by the arguments.

    Parameters
    ----------
    n_obs
        Number of cells.
    n_vars
        Number of genes, drawn without replacement from the vocabulary (``__chrM`` duplicates excluded).
    n_labels
        Number of cell types (``obs["labels"]``).
    n_batches
        Number of batches (``obs["batch"]``).
    density
        Target fraction of non-zero entries.
    seed
        Seed of the random generator.

    Returns
    -------
    AnnData
        ``X`` and ``layers["counts"]``: ``float32`` CSR integer counts; ``obs["labels"]`` and
        ``obs["batch"]`` categoricals; ``uns["xtg_dataset"]`` with the generating parameters.
    """
    symbols = np.array(
        [n for n in GeneVocab.default().names if not n.endswith("__chrM")], dtype=object
    )
    _validate(n_obs, n_vars, n_labels, n_batches, density, len(symbols))
    rng = np.random.default_rng(seed)
    var_names = rng.choice(symbols, size=n_vars, replace=False)
    labels = rng.permutation(np.arange(n_obs) % n_labels)
    batches = rng.permutation(np.arange(n_obs) % n_batches)

    base = rng.lognormal(0.0, 1.0, size=n_vars)
    program = np.ones((n_labels, n_vars))
    program_size = max(1, n_vars // (4 * n_labels))
    for label, genes in enumerate(np.array_split(rng.permutation(n_vars), n_labels)):
        program[label, genes[:program_size]] = _PROGRAM_BOOST
    batch_scale = rng.lognormal(0.0, 0.3, size=(n_batches, n_vars))
    label_depth = np.exp(np.linspace(-0.4, 0.4, n_labels))
    library = rng.lognormal(0.0, 0.4, size=n_obs) * label_depth[labels]
    library /= library.mean()

    indptr = np.zeros(n_obs + 1, dtype=np.int64)
    indices, data = [], []
    for cell in range(n_obs):
        weights = base * program[labels[cell]] * batch_scale[batches[cell]]
        n_nonzero = int(np.clip(round(density * n_vars * library[cell]), 1, n_vars))
        genes = np.sort(
            rng.choice(n_vars, size=n_nonzero, replace=False, p=weights / weights.sum())
        )
        mean_extra = _MEAN_EXTRA_COUNT * library[cell] * weights[genes] / weights[genes].mean()
        indices.append(genes)
        data.append(1.0 + rng.poisson(mean_extra))
        indptr[cell + 1] = indptr[cell] + n_nonzero
    X = sp.csr_matrix(
        (np.concatenate(data).astype(np.float32), np.concatenate(indices), indptr),
        shape=(n_obs, n_vars),
    )
    obs = pd.DataFrame(
        {
            "labels": pd.Categorical([f"type_{i}" for i in labels]),
            "batch": pd.Categorical([f"batch_{i}" for i in batches]),
        },
        index=pd.Index([f"cell_{i}" for i in range(n_obs)]),
    )
    adata = AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(var_names.astype(str))))
    adata.layers["counts"] = X.copy()
    adata.uns["xtg_dataset"] = {
        "name": "synthetic",
        "params": {
            "n_obs": n_obs,
            "n_vars": n_vars,
            "n_labels": n_labels,
            "n_batches": n_batches,
            "density": density,
            "seed": seed,
        },
    }
    return adata


def _validate(
    n_obs: int, n_vars: int, n_labels: int, n_batches: int, density: float, n_symbols: int
) -> None:
    if min(n_obs, n_labels, n_batches) < 1 or not 1 <= n_vars <= n_symbols:
        msg = (
            f"Need n_obs, n_labels, n_batches >= 1 and 1 <= n_vars <= {n_symbols}; got n_obs={n_obs}, "
            f"n_vars={n_vars}, n_labels={n_labels}, n_batches={n_batches}."
        )
        raise ValueError(msg)
    if not 0.0 < density <= 1.0:
        msg = f"density must be in (0, 1], got {density}."
        raise ValueError(msg)
