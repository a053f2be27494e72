from __future__ import annotations

import functools
import hashlib
import logging
import warnings
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from xtrimogene_sc.data._alignment import GeneAlignment
from xtrimogene_sc.data._name_hints import (
    candidate_hint,
    ensembl_fraction,
    examples,
    mismatch_hints,
)
from xtrimogene_sc.data._synonyms import RULES, match_ensembl, match_synonyms, rule_code

logger = logging.getLogger(__name__)

_VOCAB_FILE = "OS_scRNA_gene_index.19264.tsv"
_HEADER = ("gene_name", "index")
_VOCAB_COVERAGE_WARN = 0.5


class GeneVocab:
    """Ordered gene vocabulary: position ``i`` holds the symbol of model gene id ``i``.

    Parameters
    ----------
    names
        Unique, non-empty gene symbols in position order.
    """

    def __init__(self, names: Sequence[str]) -> None:
        arr = np.array([str(n) for n in names], dtype=object)
        if arr.size == 0 or any(n == "" or "\t" in n or "\n" in n for n in arr):
            msg = (
                "Gene vocabulary names must be a non-empty list of non-empty symbols without tabs."
            )
            raise ValueError(msg)
        index = pd.Index(arr)
        if index.has_duplicates:
            dups = index[index.duplicated()].unique()[:5].tolist()
            msg = f"Gene vocabulary contains duplicated symbols, e.g. {dups}."
            raise ValueError(msg)
        arr.setflags(write=False)
        self.names: np.ndarray = arr
        self._index = index

    @classmethod
    def default(cls) -> GeneVocab:
        """Return the 19,264-gene xTrimoGene/scFoundation vocabulary shipped with the package (cached)."""
        return _default_vocab()

    @classmethod
    def from_tsv(cls, path: str | Path) -> GeneVocab:
        """Read a vocabulary TSV with header ``gene_name<TAB>index`` where index equals the row number."""
        return cls._from_text(Path(path).read_text(encoding="utf-8"), source=str(path))

    @classmethod
    def _from_text(cls, text: str, *, source: str) -> GeneVocab:
        lines = text.splitlines()
        if not lines or tuple(lines[0].split("\t")) != _HEADER:
            msg = f"{source}: expected header 'gene_name<TAB>index', got {lines[:1]!r}."
            raise ValueError(msg)
        names = []
        for row, line in enumerate(lines[1:]):
            fields = line.split("\t")
            if len(fields) != 2 or fields[1].strip() != str(row):
                msg = f"{source}: line {row + 2} is {line!r}; expected '<symbol><TAB>{row}'."
                raise ValueError(msg)
            names.append(fields[0])
        return cls(names)

    def to_tsv(self, path: str | Path) -> None:
        """Write the vocabulary in its canonical TSV form (byte-identical to the shipped file)."""
        Path(path).write_text(self._canonical_text(), encoding="utf-8", newline="\n")

    def _canonical_text(self) -> str:
        rows = (f"{name}\t{i}\n" for i, name in enumerate(self.names))
        return "\t".join(_HEADER) + "\n" + "".join(rows)

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 hex digest of the canonical TSV text (equals the hash of the shipped file)."""
        return hashlib.sha256(self._canonical_text().encode("utf-8")).hexdigest()

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GeneVocab):
            return NotImplemented
        return len(self) == len(other) and bool(np.all(self.names == other.names))

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return f"GeneVocab(n_genes={len(self)}, sha256={self.sha256[:12]}…)"

    @functools.cached_property
    def _folded_index(self) -> dict[str, int]:
        """Upper-cased symbol -> position, for symbols whose upper case is unique."""
        folded = pd.Series(np.arange(len(self)), index=[n.upper() for n in self.names])
        return folded[~folded.index.duplicated(keep=False)].to_dict()

    def positions(self, symbols: Sequence[object]) -> np.ndarray:
        """Vocabulary position of each symbol (exact match), ``-1`` where unmatched, NaN or empty."""
        keys = [k if isinstance(k, str) else None for k in _as_object_array(symbols)]
        keys = np.asarray(keys, dtype=object)
        return self._index.get_indexer(keys).astype(np.int64)

    def _match(
        self, names: np.ndarray, *, strict: bool
    ) -> tuple[np.ndarray, np.ndarray, dict[str, list[str]]]:
        """Vocabulary position of each name, the rule that matched it, and examples by rule."""
        steps = [self.positions(names)]
        if not strict:
            steps.append(_match_case_insensitively(names, steps[-1], self))
            steps.append(match_ensembl(names, steps[-1], self.positions))
            synonyms, dropped = match_synonyms(names, steps[-1], self.positions)
            steps.append(synonyms)
            if dropped:
                logger.info(
                    "%d gene names are other names of genes the data already has, or of a gene "
                    "two columns name, and are left out (e.g. %s)", len(dropped), dropped[:3],
                )  # fmt: skip
        rule = np.zeros(len(names), dtype=np.int8)
        found: dict[str, list[str]] = {}
        for code, (before, after) in enumerate(zip([None, *steps], steps, strict=False), 1):
            new = after >= 0 if before is None else (after >= 0) & (before < 0)
            rule[new] = code
            if code > rule_code("exact") and new.any():
                found[RULES[code - 1]] = [
                    f"{names[i]}->{self.names[after[i]]}" for i in np.flatnonzero(new)[:5]
                ]
        return steps[-1], rule, found

    def align(
        self,
        var_names_or_adata: AnnData | Sequence[str],
        *,
        gene_symbols_key: str | None = None,
        min_overlap: float = 0.25,
        min_genes: int = 100,
        strict: bool = False,
    ) -> GeneAlignment:
        """Match a dataset's genes to the vocabulary, by symbol and by their other names.

        The rules apply in this order, each only to columns no earlier rule matched:

        1. ``exact``: the vocabulary symbol.
        2. ``case``: a symbol written all in lower or all in upper case (``cd4``, ``C1ORF112``),
           matched ignoring case when that is unambiguous (no other column names the same
           gene), with a warning. Mixed-case (mouse-style ``Cd4``) symbols are not folded.
        3. ``ensembl``: an Ensembl gene ID, with or without its version suffix
           (``ENSG00000141510.17``), so no ``gene_symbols_key`` is needed.
        4. ``synonym``: a previous symbol or an alias that stands for one vocabulary gene only
           (``MARCH8`` for ``MARCHF8``, ``H3F3A`` for ``H3-3A``), used when that gene is not
           already a column of the data and no other column's synonym names it. An ambiguous
           alias is never used, and never one over an exact match.

        :meth:`GeneAlignment.rule_counts` and ``examples`` record what each rule matched.

        Parameters
        ----------
        var_names_or_adata
            An AnnData (``adata.var_names`` or ``adata.var[gene_symbols_key]`` is used) or a sequence of
            gene symbols, one per column.
        gene_symbols_key
            Column of ``adata.var`` that holds gene symbols, e.g. when ``var_names`` are Ensembl IDs.
        min_overlap
            Minimum fraction of user genes that must match the vocabulary.
        min_genes
            Minimum number of distinct vocabulary genes that must be matched.
        strict
            Match exact vocabulary symbols only (rule 1).

        Returns
        -------
        GeneAlignment
            The column-to-position mapping and coverage statistics.

        Raises
        ------
        ValueError
            If names look like Ensembl IDs and no ``gene_symbols_key`` was given, or the overlap is too low.
        """
        if not 0.0 <= min_overlap <= 1.0 or min_genes < 0:
            msg = f"min_overlap must be in [0, 1] and min_genes >= 0, got {min_overlap} and {min_genes}."
            raise ValueError(msg)
        names, var = _resolve_names(var_names_or_adata, gene_symbols_key)
        if strict and gene_symbols_key is None and ensembl_fraction(names) > 0.5:
            msg = (
                f"Most gene names look like Ensembl IDs (e.g. {examples(names)}), but strict=True "
                "matches vocabulary symbols only. Pass strict=False to match Ensembl IDs, or "
                f"gene_symbols_key='<var column with symbols>'{candidate_hint(var, self.positions)}."
            )
            raise ValueError(msg)
        pos, rule, found = self._match(names, strict=strict)
        alignment = _build_alignment(pos, len(self), rule, found)
        if found.keys() - {"case"}:  # genes matched by an Ensembl ID or another symbol
            _report_once(alignment.summary())
        n_user, n_pos = alignment.n_vars, alignment.n_matched_positions
        if n_user == 0 or alignment.coverage_user < min_overlap or n_pos < min_genes:
            msg = (
                f"Only {alignment.n_matched_vars:,} of {n_user:,} genes ({alignment.coverage_user:.1%}) "
                f"match the {len(self):,}-gene vocabulary ({n_pos:,} distinct genes); required: at "
                f"least {min_overlap:.0%} of genes and {min_genes:,} distinct genes. Unmatched "
                f"examples: {examples(names[pos < 0])}.{mismatch_hints(names[pos < 0], self.positions)}"
            )
            if gene_symbols_key is None and ensembl_fraction(names[pos < 0]) > 0.5:
                hint = candidate_hint(var, self.positions).lstrip("; ")
                msg += f" For gene_symbols_key, {hint}."
            raise ValueError(msg)
        if alignment.n_duplicated_vars:
            dup_names = names[_duplicated_mask(pos)]
            msg = (
                f"{alignment.n_duplicated_vars:,} gene columns map to a vocabulary gene that is already "
                f"matched (e.g. {examples(dup_names)}); their counts will be summed."
            )
            warnings.warn(msg, UserWarning, stacklevel=2)
        if alignment.coverage_vocab < _VOCAB_COVERAGE_WARN:
            msg = (
                f"Only {n_pos:,} of {len(self):,} vocabulary genes ({alignment.coverage_vocab:.1%}) are "
                "measured in this dataset; the model treats the missing genes as zero expression, "
                "which can degrade embeddings. Use all measured genes, not only highly variable ones."
            )
            warnings.warn(msg, UserWarning, stacklevel=2)
        return alignment


def _match_case_insensitively(names: np.ndarray, pos: np.ndarray, vocab: GeneVocab) -> np.ndarray:
    """Positions with single-case symbols matched ignoring case where unambiguous; warns."""
    folded_index = vocab._folded_index
    candidates = [
        i
        for i in np.flatnonzero(pos < 0)
        if isinstance(names[i], str) and names[i] in (names[i].lower(), names[i].upper())
        and names[i].upper() in folded_index
    ]  # fmt: skip
    if not candidates:
        return pos
    found = np.array([folded_index[names[i].upper()] for i in candidates], dtype=np.int64)
    taken = np.isin(found, pos[pos >= 0]) | pd.Series(found).duplicated(keep=False).to_numpy()
    pos = pos.copy()
    pos[np.asarray(candidates)[~taken]] = found[~taken]
    used = [
        f"{names[i]}->{vocab.names[p]}"
        for i, p, t in zip(candidates, found, taken, strict=True)
        if not t
    ]
    dropped = [names[i] for i, t in zip(candidates, taken, strict=True) if t]
    parts = []
    if used:
        parts.append(
            f"{len(used):,} gene symbols match the vocabulary only when case is ignored and are "
            f"used (e.g. {used[:3]})"
        )
    if dropped:
        parts.append(
            f"{len(dropped):,} symbols differ only in case from a gene that another column "
            f"already names, so they are ambiguous and dropped (e.g. {dropped[:3]})"
        )
    msg = "; ".join(parts)
    warnings.warn(msg + ". Check the gene symbols of this dataset.", UserWarning, stacklevel=3)
    return pos


@functools.cache
def _default_vocab() -> GeneVocab:
    resource = files("xtrimogene_sc.data").joinpath("vocab", _VOCAB_FILE)
    return GeneVocab._from_text(resource.read_text(encoding="utf-8"), source=_VOCAB_FILE)


def _as_object_array(values: object) -> np.ndarray:
    if isinstance(values, str):
        msg = "Expected a sequence of gene names, got a single string."
        raise TypeError(msg)
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        msg = f"Expected a one-dimensional sequence of gene names, got shape {arr.shape}."
        raise ValueError(msg)
    return arr


def _resolve_names(
    obj: AnnData | Sequence[str], gene_symbols_key: str | None
) -> tuple[np.ndarray, pd.DataFrame | None]:
    if isinstance(obj, AnnData):
        if gene_symbols_key is None:
            return _as_object_array(obj.var_names), obj.var
        if gene_symbols_key not in obj.var.columns:
            columns = list(obj.var.columns)
            msg = (
                f"gene_symbols_key={gene_symbols_key!r} is not a column of adata.var ({columns})."
            )
            raise ValueError(msg)
        return _as_object_array(obj.var[gene_symbols_key]), obj.var
    if gene_symbols_key is not None:
        msg = "gene_symbols_key can only be used when an AnnData is passed."
        raise ValueError(msg)
    return _as_object_array(obj), None


def _build_alignment(
    pos: np.ndarray,
    n_vocab: int,
    rule: np.ndarray | None = None,
    found: dict[str, list[str]] | None = None,
) -> GeneAlignment:
    observed = np.zeros(n_vocab, dtype=bool)
    observed[pos[pos >= 0]] = True
    n_matched_vars = int((pos >= 0).sum())
    n_matched_positions = int(observed.sum())
    pos = pos.copy()
    for array in (pos, observed, rule):
        if array is not None:
            array.setflags(write=False)
    return GeneAlignment(
        var_to_position=pos,
        n_vars=len(pos),
        n_matched_vars=n_matched_vars,
        n_matched_positions=n_matched_positions,
        n_duplicated_vars=n_matched_vars - n_matched_positions,
        observed_positions=observed,
        match_rule=rule,
        examples=dict(found or {}),
    )


def _duplicated_mask(pos: np.ndarray) -> np.ndarray:
    return (pos >= 0) & pd.Series(pos).duplicated().to_numpy()


_REPORTED: set[str] = set()


def _report_once(summary: str) -> None:
    """Log a matching summary at INFO the first time it is seen in a process, then at DEBUG.

    One AnnData is aligned several times in a session (set-up, model, embedding); the user
    needs to read what was renamed once, not once per call.
    """
    level = logging.DEBUG if summary in _REPORTED else logging.INFO
    _REPORTED.add(summary)
    logger.log(level, "xtrimogene_sc: %s", summary)
