"""Perturbation data: registration, condition parsing, log-normalised values and group means.

Everything a perturbation predictor (model or baseline) and the metrics share. Expression is on
the model's own scale, ``ln(1 + 1e4 * c / N)`` with ``N`` a cell's total count over the genes
that map to the vocabulary; only those genes are predicted. Cells are read in row chunks and
kept sparse; the only dense arrays are per-group means (groups x genes).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from xtrimogene_sc.data._alignment import GeneAlignment
from xtrimogene_sc.data._checks import to_csr_matrix
from xtrimogene_sc.data._counts import read_counts
from xtrimogene_sc.data._synonyms import resolve_symbol
from xtrimogene_sc.data._tokenize import align_rows, normalise
from xtrimogene_sc.data._vocab import GeneVocab

if TYPE_CHECKING:
    from anndata import AnnData

SETUP_KEY = "xtg_perturbation"
SCALE = "ln(1 + 1e4 * c / N), N = total counts over the genes in the gene vocabulary"
ConditionType = Literal["genetic", "treatment"]
Condition = tuple[str, ...]  # canonical: sorted components; () is the control
ALL_CELLS = "all"
_FEW_GENES = 3  # "auto" names its choice when so few conditions could also be treatments  # the single cell type of data registered without cell_type_key


@dataclass(frozen=True)
class PerturbationSetup:
    """Where the counts, conditions and cell types of a perturbation AnnData are."""

    condition_key: str
    control: str
    condition_type: ConditionType
    cell_type_key: str | None = None
    layer: str | None = None
    gene_symbols_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (unset optional keys left out, so that h5ad files can hold them)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def parse(self, name: str) -> Condition:
        """Canonical form of a condition name (see :func:`parse_condition`)."""
        return parse_condition(name, self.control, self.condition_type)


def parse_condition(name: str, control: str, condition_type: ConditionType) -> Condition:
    """``"B+A"`` -> ``("A", "B")``; control tokens inside a combination (``"A+ctrl"``) are dropped.

    A treatment is one opaque token; a genetic condition is a set of vocabulary symbols: a gene
    named by a previous symbol, an alias or an Ensembl ID (``MARCH8``) is read as the gene it
    stands for (``MARCHF8``), by the rules of :meth:`GeneVocab.align`.
    """
    name = str(name).strip()
    if name == control:
        return ()
    if condition_type == "treatment":
        return (name,)
    parts = {p.strip() for p in name.split("+")} - {control, ""}
    return tuple(sorted({vocabulary_symbol(p) for p in parts}))


@functools.cache
def vocabulary_symbol(gene: str) -> str:
    """The vocabulary symbol ``gene`` stands for, or ``gene`` itself when it names none."""
    vocab = GeneVocab.default()
    return resolve_symbol(gene, vocab.positions, vocab.names) or gene


def renamed_genes(names: Sequence[str], control: str) -> dict[str, str]:
    """The genes of genetic condition ``names`` given by another name, and the gene each means."""
    parts = {p.strip() for n in names for p in str(n).split("+")} - {control, ""}
    return {p: vocabulary_symbol(p) for p in sorted(parts) if vocabulary_symbol(p) != p}


def warn_renamed(names: Sequence[str], control: str, *, stacklevel: int) -> None:
    """Say which condition genes are read as another vocabulary symbol (``MARCH8 -> MARCHF8``)."""
    renamed = renamed_genes(names, control)
    if renamed:
        pairs = [f"{old} -> {new}" for old, new in renamed.items()]
        msg = (
            f"{len(renamed)} perturbed gene(s) are named by a previous symbol, an alias or an "
            f"Ensembl ID and are read as the vocabulary gene they stand for: {pairs[:8]}"
        )
        warnings.warn(msg, UserWarning, stacklevel=stacklevel + 1)


def register(
    adata: AnnData,
    *,
    condition_key: str,
    control: str,
    cell_type_key: str | None,
    condition_type: Literal["auto", "genetic", "treatment"],
    layer: str | None,
    gene_symbols_key: str | None,
) -> PerturbationSetup:
    """Validate a perturbation AnnData and record its setup in ``adata.uns``."""
    conditions = _obs_column(adata, condition_key, "condition_key")
    if conditions.isna().any():
        msg = f"obs[{condition_key!r}] has {int(conditions.isna().sum())} missing values; label every cell"
        raise ValueError(msg)
    names = conditions.astype(str)
    if not (names == control).any():
        seen = sorted(names.unique())[:8]
        msg = (
            f"obs[{condition_key!r}] has no control cells labelled {control!r} (values: {seen}); "
            "responses are measured against control cells: pass control=<the label of your "
            "unperturbed cells>"
        )
        raise ValueError(msg)
    kind = _condition_type(sorted(set(names) - {control}), control, condition_type)
    if kind == "genetic":
        warn_renamed(sorted(set(names) - {control}), control, stacklevel=3)
    if cell_type_key is not None:
        _check_cell_types(adata, names, control, condition_key, cell_type_key)
    read_counts(adata, layer=layer, gene_symbols_key=gene_symbols_key).checked()
    setup = PerturbationSetup(condition_key, control, kind, cell_type_key, layer, gene_symbols_key)
    adata.uns[SETUP_KEY] = setup.to_dict()
    return setup


def align_genes(adata: AnnData, setup: PerturbationSetup) -> GeneAlignment:
    """Gene alignment without the coverage warnings, which :func:`register` already gave."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return GeneVocab.default().align(adata, gene_symbols_key=setup.gene_symbols_key)


def read_setup(adata: AnnData) -> PerturbationSetup:
    """The setup stored by :func:`register`; a clear error when there is none."""
    stored = adata.uns.get(SETUP_KEY)
    if stored is None:
        msg = (
            "this AnnData is not set up for perturbation modelling; call "
            "XTrimoGenePerturbation.setup_anndata(adata, condition_key=..., control=...) first"
        )
        raise ValueError(msg)
    return PerturbationSetup(**dict(stored))


def _obs_column(adata: AnnData, key: str, what: str) -> pd.Series:
    if key not in adata.obs:
        msg = f"{what}={key!r} is not a column of adata.obs (columns: {list(adata.obs.columns)})"
        raise KeyError(msg)
    return adata.obs[key]


def _condition_type(
    names: list[str], control: str, requested: Literal["auto", "genetic", "treatment"]
) -> ConditionType:
    if requested == "treatment":
        return "treatment"
    if requested not in ("auto", "genetic"):
        msg = f"condition_type must be 'auto', 'genetic' or 'treatment', got {requested!r}"
        raise ValueError(msg)
    vocab = GeneVocab.default()
    genes = sorted({p.strip() for n in names for p in str(n).split("+")} - {control, ""})
    resolved = [vocabulary_symbol(g) for g in genes]
    unknown = [g for g, p in zip(genes, vocab.positions(resolved), strict=True) if p < 0]
    # only exact symbols count as evidence of genes: treatments are often named like an alias
    # ('LPS' is an alias of IRF6), and another name is read as a gene once the type is genetic
    if requested == "genetic" or (vocab.positions(genes) >= 0).any():
        if unknown:
            msg = (
                f"{len(unknown)} perturbed gene(s) are not in the 19,264-gene vocabulary, e.g. "
                f"{unknown[:5]}; genetic conditions are HGNC symbols joined by '+' (e.g. "
                "'KLF1+MAP2K6'): rename them, drop those cells, or pass "
                "condition_type='treatment' if the conditions are not genes"
            )
            raise ValueError(msg)
        if requested == "auto" and len(genes) <= _FEW_GENES:
            msg = (
                f"the conditions {names} name vocabulary genes and are modelled as genetic "
                "perturbations of those genes; if they are treatments (e.g. a cytokine named "
                "like its gene), pass condition_type='treatment'"
            )
            warnings.warn(msg, UserWarning, stacklevel=4)
        return "genetic"
    return "treatment"


def _check_cell_types(
    adata: AnnData, names: pd.Series, control: str, condition_key: str, cell_type_key: str
) -> None:
    types = _obs_column(adata, cell_type_key, "cell_type_key").astype(str)
    with_control = set(types[names == control])
    lacking = sorted(set(types[names != control]) - with_control)
    if lacking:
        msg = (
            f"cell type(s) {lacking} in obs[{cell_type_key!r}] have perturbed cells but no "
            f"control cells (obs[{condition_key!r}] == {control!r}); a response is measured "
            "against the control cells of the same type: add their control cells or drop them"
        )
        raise ValueError(msg)


# ---------------------------------------------------------------------- genes and values
@dataclass(frozen=True)
class GeneSpace:
    """The genes a predictor works on: vocabulary positions, in the training data's order."""

    positions: np.ndarray
    names: np.ndarray

    @classmethod
    def from_alignment(cls, alignment: GeneAlignment) -> GeneSpace:
        """Each vocabulary gene measured by the data, once (duplicated symbols are summed)."""
        matched = alignment.var_to_position[alignment.var_to_position >= 0]
        _, first = np.unique(matched, return_index=True)
        positions = matched[np.sort(first)]
        return cls(positions, GeneVocab.default().names[positions].astype(str))

    def check(self, alignment: GeneAlignment, *, what: str) -> None:
        """Refuse data whose vocabulary genes differ: values would be normalised differently."""
        observed = set(np.flatnonzero(alignment.observed_positions).tolist())
        expected = set(self.positions.tolist())
        if observed == expected:
            return
        names = GeneVocab.default().names
        missing = sorted(names[p] for p in expected - observed)
        extra = sorted(names[p] for p in observed - expected)
        msg = (
            f"{what} measures a different gene set than the training data ({len(missing)} of its "
            f"{len(expected)} genes missing, e.g. {missing[:3]}; {len(extra)} others, e.g. "
            f"{extra[:3]}). Expression is normalised by the total over these genes, so predictions "
            "need the same genes: subset or reindex it to the model's var_names "
            "(adata[:, model.var_names]), filling genes that were not measured is not possible"
        )
        raise ValueError(msg)


def aligned_counts(
    adata: AnnData,
    setup: PerturbationSetup,
    genes: GeneSpace | None = None,
    *,
    what: str = "adata",
) -> tuple[Any, np.ndarray]:
    """Count matrix and its column -> vocabulary map, checked (and checked against ``genes``)."""
    alignment = align_genes(adata, setup)
    if genes is not None:
        genes.check(alignment, what=what)
    layer = setup.layer if setup.layer in adata.layers else None
    counts = read_counts(adata, layer=layer, alignment=alignment)
    counts.checked()
    return counts.X, counts.var_to_position


def iter_lognorm(
    X: Any,
    var_to_position: np.ndarray,
    genes: GeneSpace,
    rows: np.ndarray | None = None,
    *,
    chunk_size: int = 2048,
) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
    """Yield ``(row indices, CSR values)`` of ``rows`` (default all) on the genes of ``genes``."""
    rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows)
    for start in range(0, len(rows), chunk_size):
        chunk_rows = rows[start : start + chunk_size]
        order = np.argsort(chunk_rows)  # sorted reads for backed files
        block = to_csr_matrix(X[chunk_rows[order]])
        aligned = align_rows(block, var_to_position)
        aligned.data, _ = normalise(aligned)
        values = aligned[:, genes.positions].tocsr()
        yield chunk_rows[order], values


def group_means(
    X: Any, var_to_position: np.ndarray, genes: GeneSpace, codes: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean log-normalised profile ``(n_groups, n_genes)`` of the cells of each group code.

    Cells with a negative code are skipped; a group without cells gets NaN.
    """
    sums = np.zeros((n_groups, len(genes.positions)))
    counts = np.bincount(codes[codes >= 0], minlength=n_groups).astype(np.float64)
    for rows, values in iter_lognorm(X, var_to_position, genes, np.flatnonzero(codes >= 0)):
        indicator = sp.csr_matrix(
            (np.ones(len(rows)), (codes[rows], np.arange(len(rows)))), shape=(n_groups, len(rows))
        )
        sums += (indicator @ values).toarray()
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None], counts


# ---------------------------------------------------------------------- training profiles
@dataclass
class Profiles:
    """Observed mean profiles of a training AnnData, per condition and cell type.

    ``mean[i, t]`` is the mean of condition ``conditions[i]`` in cell type ``cell_types[t]``
    (NaN where that group has no cells); ``control[t]`` the control mean of type ``t``.
    """

    conditions: list[Condition]
    names: list[str]
    cell_types: list[str]
    mean: np.ndarray  # (conditions, types, genes)
    n_cells: np.ndarray  # (conditions, types)
    control: np.ndarray  # (types, genes)

    @property
    def response(self) -> np.ndarray:
        """``mean - control`` of each group, NaN where unobserved."""
        return self.mean - self.control[None]

    def observed_groups(self) -> list[tuple[int, int]]:
        """(condition index, type index) of every group with cells."""
        return [tuple(ix) for ix in np.argwhere(self.n_cells > 0)]

    def __post_init__(self) -> None:
        self._lookup = {c: i for i, c in enumerate(self.conditions)}

    def index(self, condition: Condition) -> int | None:
        """Position of ``condition`` in :attr:`conditions`, ``None`` if it was not observed."""
        return self._lookup.get(condition)


def cell_types_of(adata: AnnData, setup: PerturbationSetup) -> np.ndarray:
    """Cell type of every cell as strings (``"all"`` without a cell-type key)."""
    if setup.cell_type_key is None:
        return np.full(adata.n_obs, ALL_CELLS, dtype=object)
    return _obs_column(adata, setup.cell_type_key, "cell_type_key").astype(str).to_numpy()


def compute_profiles(adata: AnnData, setup: PerturbationSetup, genes: GeneSpace) -> Profiles:
    """Group means of every (condition, cell type) of a registered AnnData."""
    X, var_to_position = aligned_counts(adata, setup, genes, what="the training AnnData")
    raw = _obs_column(adata, setup.condition_key, "condition_key").astype(str).to_numpy()
    parsed = [setup.parse(n) for n in raw]
    conditions = sorted({c for c in parsed if c})
    names = {}
    for name, condition in zip(raw, parsed, strict=True):
        names.setdefault(condition, name)
    types = cell_types_of(adata, setup)
    type_names = sorted(set(types))
    cond_index = {c: i + 1 for i, c in enumerate(conditions)}  # 0 is the control
    cond_code = np.array([cond_index.get(c, 0) for c in parsed])
    type_code = pd.Categorical(types, categories=type_names).codes.astype(np.int64)
    n_conditions, n_types = len(conditions) + 1, len(type_names)
    means, counts = group_means(
        X, var_to_position, genes, cond_code * n_types + type_code, n_conditions * n_types
    )
    means = means.reshape(n_conditions, n_types, -1)
    counts = counts.reshape(n_conditions, n_types)
    return Profiles(
        conditions=conditions,
        names=[names[c] for c in conditions],
        cell_types=type_names,
        mean=means[1:],
        n_cells=counts[1:],
        control=means[0],
    )


def condition_labels(names: Sequence[str], setup: PerturbationSetup) -> list[Condition]:
    """Parse user-given condition names; strings only."""
    if isinstance(names, str):
        msg = "conditions must be a list of condition names, e.g. ['KLF1', 'KLF1+MAP2K6']"
        raise TypeError(msg)
    for name in names:
        text = str(name).strip()
        members = [p.strip() for p in text.split("+")]
        if text != setup.control and (not text or "" in members):
            msg = (
                f"condition {str(name)!r} names no perturbation (an empty name or an empty "
                f"member); name genes or treatments, e.g. 'KLF1' or 'KLF1+MAP2K6', or "
                f"{setup.control!r} for the control"
            )
            raise ValueError(msg)
    return [setup.parse(n) for n in names]
