"""The documentation site stays in step with the code (no Sphinx needed: CI has no doc extra).

* every name in a public ``__all__`` is listed in ``docs/api.md`` and every listed name imports;
* every toctree entry of ``docs/index.md`` exists and every page is in a toctree;
* every citation key used in the pages is in ``docs/references.bib``;
* the parameter counts in ``docs/model.md`` are what the presets instantiate;
* the ``python`` blocks of ``docs/getting_started.md`` run (on fewer cells for one epoch by
  default; the page as written with ``XTG_SLOW_FULL=1``).
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"

PUBLIC_PACKAGES = (
    "xtrimogene_sc",
    "xtrimogene_sc.pp",
    "xtrimogene_sc.tl",
    "xtrimogene_sc.pl",
    "xtrimogene_sc.datasets",
    "xtrimogene_sc.data",
    "xtrimogene_sc.annotation",
    "xtrimogene_sc.perturbation",
    "xtrimogene_sc.drugcomb",
    "xtrimogene_sc.model",
    "xtrimogene_sc.module",
    "xtrimogene_sc.nn",
    "xtrimogene_sc.train",
    "xtrimogene_sc.pretrain",
)


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------- API page
def _api_entries() -> list[str]:
    """Fully qualified names in the autosummary lists and ``py:data`` directives of api.md."""
    entries: list[str] = []
    current, in_summary = "", False
    for line in _read("api.md").splitlines():
        stripped = line.strip()
        if stripped.startswith(".. currentmodule::"):
            current = stripped.split("::", 1)[1].strip()
        elif stripped.startswith(".. py:data::"):
            entries.append(stripped.split("::", 1)[1].strip())
        elif stripped.startswith(".. autosummary::"):
            in_summary = True
        elif stripped.startswith("```"):
            in_summary = False
        elif in_summary and stripped and not stripped.startswith(":"):
            entries.append(f"{current}.{stripped.lstrip('~')}")
    return entries


def _resolve(qualname: str) -> object:
    """Import ``a.b.c.Name`` (the longest importable module prefix, then attributes)."""
    parts = qualname.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attr in parts[split:]:
            obj = getattr(obj, attr)
        return obj
    msg = f"cannot import {qualname}"
    raise ImportError(msg)


def test_api_entries_import() -> None:
    entries = _api_entries()
    assert len(entries) > 30
    broken = []
    for entry in entries:
        try:
            _resolve(entry)
        except (ImportError, AttributeError) as err:
            broken.append(f"{entry}: {err}")
    assert not broken, "docs/api.md lists names that do not import:\n" + "\n".join(broken)


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_every_public_name_is_in_the_api_page(package: str) -> None:
    documented = {id(_resolve(entry)) for entry in _api_entries()}
    module = importlib.import_module(package)
    missing = [
        f"{package}.{name}"
        for name in module.__all__
        if not name.startswith("__")
        and not isinstance(getattr(module, name), ModuleType)
        and id(getattr(module, name)) not in documented
    ]
    assert not missing, f"add these to docs/api.md: {missing}"


# ---------------------------------------------------------------------------- pages
def _toctree_entries() -> list[str]:
    entries, inside = [], False
    for line in _read("index.md").splitlines():
        stripped = line.strip()
        if stripped.startswith("```{toctree}"):
            inside = True
        elif inside and stripped.startswith("```"):
            inside = False
        elif inside and stripped and not stripped.startswith(":"):
            entries.append(stripped)
    return entries


def _pages() -> set[str]:
    return {
        p.relative_to(DOCS).with_suffix("").as_posix()
        for p in DOCS.rglob("*.md")
        if not p.relative_to(DOCS).parts[0].startswith(("_", "generated"))
    }


def test_toctree_entries_exist() -> None:
    entries = _toctree_entries()
    pages = _pages()
    fixed = [e for e in entries if not any(c in e for c in "*?[")]
    assert {"getting_started", "model", "api", "references", "contributing"} <= set(fixed)
    assert not [e for e in fixed if e not in pages], "toctree entries without a page"


def test_every_page_is_in_a_toctree() -> None:
    entries = _toctree_entries()
    orphans = [
        page
        for page in _pages() - {"index"}
        if not any(fnmatch.fnmatch(page, entry) for entry in entries)
    ]
    assert not orphans, f"add these pages to a toctree in docs/index.md: {orphans}"


def test_cited_keys_are_in_the_bibliography() -> None:
    keys = set(re.findall(r"^@\w+\{([^,]+),", _read("references.bib"), re.MULTILINE))
    assert {"Gong2023xTrimoGene", "Hao2024scFoundation"} <= keys
    cited = set()
    for page in DOCS.glob("*.md"):
        for group in re.findall(r"(?<!`)\{cite:[pt]\}`([^`]+)`", page.read_text(encoding="utf-8")):
            cited.update(k.strip() for k in group.split(","))
    assert cited, "no citations found"
    assert not cited - keys, f"cited but not in references.bib: {sorted(cited - keys)}"


# ---------------------------------------------------------------------------- model page
def test_preset_table_matches_the_module() -> None:
    from xtrimogene_sc.module import PRESETS, XTrimoGeneConfig, XTrimoGeneModule

    rows = re.findall(
        r"^\| `(\w+)` \|.*\| ([\d,]+) \| ([\d,]+) \|$", _read("model.md"), re.MULTILINE
    )
    table = {
        name: (int(total.replace(",", "")), int(no_gene.replace(",", "")))
        for name, total, no_gene in rows
    }
    assert set(table) == set(PRESETS)
    for name, (total, without_gene_table) in table.items():
        with torch.device("meta"):  # shapes only: the 100m model costs no memory or time
            module = XTrimoGeneModule(XTrimoGeneConfig.preset(name))
        n_params = sum(p.numel() for p in module.parameters())
        assert n_params == total, f"{name}: docs say {total:,}, the module has {n_params:,}"
        assert n_params - module.gene_embedding.weight.numel() == without_gene_table, name


# ---------------------------------------------------------------------------- getting started
# (text in the page, bounded replacement): fewer cells and one epoch keep the test short.
BOUNDED = (
    ("xtg.datasets.pbmc68k_counts()", "xtg.datasets.pbmc68k_counts()[:150].copy()"),
    (
        "**recipe.train_kwargs(adata.n_obs))",
        '**{**recipe.train_kwargs(adata.n_obs), "max_epochs": 1})',
    ),
    ("adata[:100]", "adata[:10]"),
)


def _runnable_code() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", _read("getting_started.md"), re.S | re.M)
    assert len(blocks) >= 5, "getting_started.md lost its runnable python blocks"
    return "\n".join(blocks)


@pytest.mark.slow
def test_getting_started_runs(slow_full: bool, tmp_path: Path, monkeypatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    code = _runnable_code()
    if not slow_full:
        for old, new in BOUNDED:
            assert old in code, f"getting_started.md changed: update BOUNDED ({old!r})"
            code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)  # the page saves into xtg_demo/
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # low vocabulary coverage of the demo data
        exec(compile(code, "getting_started.md", "exec"), namespace)
    plt.close("all")

    adata, model = namespace["adata"], namespace["model"]
    n_cells = 700 if slow_full else 150
    assert adata.obsm["X_xtg"].shape == (n_cells, model.config.encoder_dim)  # mean pooling
    assert adata.obs["xtg_leiden"].nunique() > 1
    # the model loaded from disk embeds exactly like the one that was saved
    np.testing.assert_allclose(namespace["latent"], adata.obsm["X_xtg"], atol=1e-5)
    assert namespace["genes"].shape == (4, model.config.decoder_dim)
    assert (tmp_path / "xtg_demo" / "model" / "model.safetensors").exists()
    val_loss = namespace["val_loss"]["validation_loss"].to_numpy(dtype=float)
    assert np.isfinite(val_loss).all()
    if slow_full:  # the recipe's training lowers the validation loss
        assert val_loss[-1] < 0.9 * val_loss[0]
