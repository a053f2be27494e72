"""Other names of vocabulary genes: previous symbols, aliases and Ensembl IDs.

Files made before about 2020 name genes by symbols that HGNC has since renamed (``MARCH8``,
``SEPT7``, ``H3F3A``), and many files name them by Ensembl ID. Matched by exact symbol only,
those genes would be dropped and every cell's depth ``N`` would be too small. The table of
other names ships with the package (``vocab/gene_synonyms.tsv.gz``, built by
``tools/build_gene_synonyms.py``; only names that stand for one vocabulary gene are in it).
"""

from __future__ import annotations

import functools
import gzip
import re
from collections.abc import Callable, Sequence
from importlib.resources import files

import numpy as np
import pandas as pd

#: the matching rules of :meth:`GeneVocab.align`, in the order they apply; a column's code is
#: its rule's index plus one (:func:`rule_code`), 0 where no rule matched
RULES = ("exact", "case", "ensembl", "synonym")
_TABLE = "gene_synonyms.tsv.gz"
_ENSEMBL_ID = re.compile(r"^(ENS[A-Z]*G\d{6,})(\.\d+)?$")

Positions = Callable[[Sequence[object]], np.ndarray]


def rule_code(rule: str) -> int:
    """The code of a matching rule in an alignment's ``match_rule`` array."""
    return RULES.index(rule) + 1


@functools.cache
def synonym_table() -> dict[str, dict[str, str]]:
    """``{"alias": {name: symbol}, "ensembl": {id: symbol}}`` from the shipped table."""
    resource = files("xtrimogene_sc.data").joinpath("vocab", _TABLE)
    with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
        frame = pd.read_csv(text, sep="\t", dtype=str, keep_default_na=False)
    return {
        kind: dict(zip(group["name"], group["vocabulary_symbol"], strict=True))
        for kind, group in frame.groupby("kind")
    }


def ensembl_base(name: object) -> str | None:
    """``ENSG00000141510`` for ``ENSG00000141510`` or ``ENSG00000141510.17``; else ``None``."""
    if not isinstance(name, str):
        return None
    found = _ENSEMBL_ID.match(name.strip())
    return None if found is None else found.group(1)


def match_ensembl(names: np.ndarray, pos: np.ndarray, positions: Positions) -> np.ndarray:
    """Positions of the unmatched columns named by an Ensembl gene ID (version ignored)."""
    table = synonym_table().get("ensembl", {})
    hits = [(i, table.get(ensembl_base(names[i]) or "")) for i in np.flatnonzero(pos < 0)]
    hits = [(i, symbol) for i, symbol in hits if symbol is not None]
    pos = pos.copy()
    if hits:
        rows, symbols = zip(*hits, strict=True)
        pos[list(rows)] = positions(list(symbols))
    return pos


def match_synonyms(
    names: np.ndarray, pos: np.ndarray, positions: Positions
) -> tuple[np.ndarray, list[str]]:
    """Positions of the unmatched columns named by a previous symbol or an alias.

    A synonym is used only when its gene is not already a column of the data (an exact match
    always wins) and no other column's synonym names the same gene. Returns the positions and
    the names left out for that reason.
    """
    table = synonym_table().get("alias", {})
    unmatched = [i for i in np.flatnonzero(pos < 0) if isinstance(names[i], str)]
    candidates = [(i, table[names[i].strip()]) for i in unmatched if names[i].strip() in table]
    if not candidates:
        return pos, []
    found = positions([symbol for _, symbol in candidates])
    present = set(pos[pos >= 0].tolist())
    clash = pd.Series(found).duplicated(keep=False).to_numpy()
    pos = pos.copy()
    dropped = []
    for (i, _), p, twice in zip(candidates, found, clash, strict=True):
        if p < 0 or p in present or twice:
            dropped.append(str(names[i]))
        else:
            pos[i] = p
    return pos, dropped


def resolve_symbol(name: str, positions: Positions, vocabulary: np.ndarray) -> str | None:
    """The vocabulary symbol ``name`` stands for, by the rules of ``GeneVocab.align``.

    Itself, the gene of its Ensembl ID, or the gene its unambiguous previous symbol or alias
    stands for; ``None`` when it names no vocabulary gene.
    """
    if positions([name])[0] >= 0:
        return name
    tables = synonym_table()
    symbol = tables.get("ensembl", {}).get(ensembl_base(name) or "")
    symbol = symbol or tables.get("alias", {}).get(name.strip())
    position = -1 if symbol is None else positions([symbol])[0]
    return None if position < 0 else str(vocabulary[position])
