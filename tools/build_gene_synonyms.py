"""Build ``xtrimogene_sc/data/vocab/gene_synonyms.tsv.gz``: other names of the vocabulary genes.

The table maps previous symbols, aliases and Ensembl gene IDs to the vocabulary symbol they
stand for, so that :meth:`xtrimogene_sc.GeneVocab.align` recovers genes that a data set names
by an older symbol (``MARCH8`` for ``MARCHF8``) or by Ensembl ID. Source: the Bioconductor
OrgDb for human as packaged by Debian (``r-bioc-org.hs.eg.db``: NCBI Entrez Gene symbols and
aliases, Ensembl gene IDs). The package itself never needs the Debian package: it ships the
table this script writes.

Run it where the Debian package's SQLite file is available, either installed
(``apt-get install r-bioc-org.hs.eg.db``) or unpacked from the downloaded ``.deb``
(``apt-get download r-bioc-org.hs.eg.db && dpkg-deb -x r-bioc-org.hs.eg.db_*.deb DIR``)::

    python tools/build_gene_synonyms.py [--sqlite PATH] [--out PATH]

Only names that map to exactly one vocabulary gene are written (an ambiguous alias must never
be used), with their kind (``alias`` or ``ensembl``); a name that is itself a vocabulary
symbol is kept, because the aligner lets an exact symbol match win before any synonym.
"""

from __future__ import annotations

import argparse
import gzip
import sqlite3
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB = ROOT / "xtrimogene_sc" / "data" / "vocab" / "OS_scRNA_gene_index.19264.tsv"
OUT = ROOT / "xtrimogene_sc" / "data" / "vocab" / "gene_synonyms.tsv.gz"
DEBIAN_SQLITE = Path("/usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite")
QUERIES = {
    "alias": "SELECT a.alias_symbol, g.symbol FROM alias a JOIN gene_info g ON a._id = g._id",
    "ensembl": "SELECT e.ensembl_id, g.symbol FROM ensembl e JOIN gene_info g ON e._id = g._id",
}


def vocabulary_symbols(path: Path = VOCAB) -> set[str]:
    """The 19,264 symbols of the package's vocabulary file."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return {line.split("\t")[0] for line in lines if line}


def synonym_rows(sqlite_path: Path, vocabulary: set[str]) -> list[tuple[str, str, str, int]]:
    """``(name, vocabulary_symbol, kind, n_targets)`` for every other name of a vocabulary gene.

    ``n_targets`` counts the distinct vocabulary genes a name stands for (within its kind).
    """
    with sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True) as con:
        rows = []
        for kind, query in QUERIES.items():
            targets: dict[str, set[str]] = defaultdict(set)
            for name, symbol in con.execute(query):
                if symbol in vocabulary and name and name != symbol:
                    targets[name].add(symbol)
            rows += [
                (name, symbol, kind, len(symbols))
                for name, symbols in targets.items()
                for symbol in sorted(symbols)
            ]
    return sorted(rows)


def write_table(rows: list[tuple[str, str, str, int]], out: Path) -> int:
    """Write the unambiguous rows as a gzipped TSV (reproducible bytes); return their number."""
    kept = [row[:3] for row in rows if row[3] == 1]
    text = "name\tvocabulary_symbol\tkind\n" + "".join("\t".join(r) + "\n" for r in kept)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(text.encode("utf-8"))
    return len(kept)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", type=Path, default=DEBIAN_SQLITE,
                        help="org.Hs.eg.sqlite of the Debian package r-bioc-org.hs.eg.db")  # fmt: skip
    parser.add_argument("--out", type=Path, default=OUT, help="table to write")
    args = parser.parse_args(argv)
    if not args.sqlite.is_file():
        parser.error(
            f"{args.sqlite} not found: install r-bioc-org.hs.eg.db, or unpack its .deb and pass "
            "--sqlite DIR/usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite"
        )
    rows = synonym_rows(args.sqlite, vocabulary_symbols())
    n = write_table(rows, args.out)
    ambiguous = len({r[0] for r in rows if r[3] > 1})
    print(f"wrote {n:,} unambiguous names to {args.out} ({ambiguous:,} ambiguous names left out)")


if __name__ == "__main__":
    main()
