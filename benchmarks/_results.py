"""Recorded results: a benchmark's printed table goes between two markers of a markdown file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of benchmark ``name`` (e.g. ``"perturbation"``)."""
    return f"<!-- bench-{name}:start -->", f"<!-- bench-{name}:end -->"


def replace_block(path: Path, text: str, name: str) -> None:
    """Write ``text`` between the markers of ``name`` in ``path`` (appended if they are absent)."""
    start, end = markers(name)
    block = f"{start}\n{text}\n{end}"
    old = path.read_text() if path.exists() else ""
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old + ("\n" if old else "") + block + "\n"
    path.write_text(new)


def mean_sd(values: pd.Series) -> str:
    """``"mean ± sd"`` of the non-missing values (sd 0 for one value, "–" for none)."""
    values = values.dropna()
    if values.empty:
        return "–"
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.3f} ± {sd:.3f}"


def record(text: str, paths: list[Path] | None, name: str) -> None:
    """Print a benchmark's report and write it between the markers of each of ``paths``."""
    print("\n" + text)
    for path in paths or []:
        replace_block(Path(path), text, name)
        print(f"wrote {path}")


def main() -> None:
    """``python benchmarks/_results.py NAME TEXT FILE...``: put the contents of ``TEXT`` (a
    benchmark's printed tables, saved from a run without ``--write``) into each ``FILE``."""
    import sys

    name, source, *files = sys.argv[1:]
    text = Path(source).read_text()
    for path in files:
        replace_block(Path(path), text.strip(), name)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
