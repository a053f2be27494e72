"""What to tell a user whose gene names do not match the vocabulary: examples and likely causes.

The hints name the usual reasons (Ensembl IDs without a symbols column, mouse-style symbols,
integer names from a reset index, missing names) so the error says what to do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

#: vocabulary position of each symbol, -1 where none (``GeneVocab.positions``)
Positions = Callable[[Sequence[object]], np.ndarray]

ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{6,}")
_N_EXAMPLES = 5


def examples(names: np.ndarray) -> list[object]:
    return [n if isinstance(n, str) else repr(n) for n in names[:_N_EXAMPLES]]


def ensembl_fraction(names: np.ndarray) -> float:
    hits = [isinstance(n, str) and ENSEMBL_RE.match(n) is not None for n in names]
    return float(np.mean(hits)) if hits else 0.0


def candidate_hint(var: pd.DataFrame | None, positions: Positions) -> str:
    if var is None:
        return " (AnnData input only), or map the IDs to HGNC symbols first"
    found = []
    for col in var.columns:
        series = var[col]
        if not (
            series.dtype == object
            or isinstance(series.dtype, pd.CategoricalDtype | pd.StringDtype)
        ):
            continue
        frac = float((positions(series.astype(object)) >= 0).mean())
        if frac >= 0.25:
            found.append((frac, col))
    if not found:
        return "; no column of adata.var looks like it holds symbols, map Ensembl IDs to HGNC symbols first"
    found.sort(key=lambda item: -item[0])
    listed = ", ".join(f"{col!r} ({frac:.0%} match)" for frac, col in found)
    return f"; candidate columns: {listed}"


def mismatch_hints(unmatched: np.ndarray, positions: Positions) -> str:
    strings = [n for n in unmatched if isinstance(n, str)]
    hints = []
    title = [n for n in strings if n[:1].isupper() and n[1:] != n[1:].upper()]
    if title and (positions([n.upper() for n in title]) >= 0).mean() > 0.5:
        hints.append(
            f"many names are in mouse-style title case (e.g. {title[:3]}); the vocabulary holds human "
            "HGNC symbols, so map mouse genes to their human orthologs (mixed case is not folded)"
        )
    if ensembl_fraction(np.asarray(strings, dtype=object)) > 0.5:
        hints.append(
            "many names look like Ensembl IDs; pass gene_symbols_key= with a var column of symbols"
        )
    numbers = [n for n in unmatched if str(n).strip().lstrip("-").isdigit()]
    if len(numbers) > 0.5 * max(len(unmatched), 1):
        hints.append(
            f"the gene names are integers (e.g. {[str(n) for n in numbers[:3]]}): the var index "
            "was reset or the file was written without gene names; put HGNC symbols in "
            "var_names, or pass gene_symbols_key= with the var column that holds them"
        )
    if len(strings) < len(unmatched):
        hints.append(f"{len(unmatched) - len(strings):,} names are missing (NaN/None)")
    return "".join(f" Hint: {h}." for h in hints)
