"""The package root loads its subpackages on first use: the command line starts without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import xtrimogene_sc as xtg

HEAVY = ("torch", "anndata", "scanpy", "scvi", "lightning")


def _fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet) and return its stdout."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_importing_the_package_and_building_the_cli_loads_no_heavy_library() -> None:
    code = (
        "import sys, xtrimogene_sc, xtrimogene_sc.cli\n"
        "xtrimogene_sc.cli.build_parser()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert _fresh_python(code) == ""


def test_a_subpackage_loads_only_what_it_needs() -> None:
    code = f"import sys, xtrimogene_sc.module\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    assert _fresh_python(code) == "torch"  # the torch module, without anndata or scvi-tools


def test_exported_names_and_subpackages_resolve_on_first_use() -> None:
    from xtrimogene_sc import XTrimoGene
    from xtrimogene_sc.model import XTrimoGene as defined

    assert XTrimoGene is defined is xtg.XTrimoGene
    assert xtg.model.SMALL_DATA_RECIPE.preset == "tiny"
    for name in xtg.__all__:
        assert getattr(xtg, name) is not None
    assert {"XTrimoGene", "tl", "model", "pretrain"} <= set(dir(xtg))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'XTrimogene'"):
        _ = xtg.XTrimogene
    with pytest.raises(ImportError):
        from xtrimogene_sc import does_not_exist  # noqa: F401
