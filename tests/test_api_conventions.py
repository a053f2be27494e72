"""scanpy conventions for everything exported from ``xtrimogene_sc.pp``, ``tl`` and ``pl``.

* ``adata`` is the first parameter;
* at most two parameters may be passed by position, everything else is keyword-only;
* a ``copy`` parameter defaults to ``False`` and the function then returns ``AnnData | None``;
* ``tl`` functions name what they write with ``key_added``; ``pl`` functions take ``show``;
* every parameter is described in the numpy ``Parameters`` section of the docstring.

Classes exported from these namespaces (e.g. ``tl.EmbeddingProbe``) are not scanpy-style
functions and are not checked here. A function that cannot follow a rule is listed below with
the reason; an entry that no longer names an exported function makes the test fail, so the
lists cannot go stale.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

import pytest

import xtrimogene_sc as xtg

NAMESPACES = {"pp": xtg.pp, "tl": xtg.tl, "pl": xtg.pl}

# Functions whose first parameter is not an AnnData, and why.
NOT_ADATA_FIRST = {
    "tl.expected_calibration_error": "a metric on arrays (probabilities, true labels)",
    "pl.training_curves": "figure only: plots a model's training history, not an AnnData",
    "tl.embed_h5ad": "file to file: streams an .h5ad too large for memory, given by its path",
}
# tl functions that write nothing into ``adata`` (so need neither ``key_added`` nor ``copy``).
TL_WRITES_NOTHING = {
    "tl.check_gene_overlap": "returns the gene overlap of two AnnData objects as a number",
    "tl.expected_calibration_error": "returns a calibration metric as a number",
    "tl.embed_h5ad": "writes a new .h5ad file (the input is only read), not into an AnnData",
    "tl.perturbation_metrics": "returns a table of scores of predictions against observed cells",
    "tl.score_embedding": "returns metrics of an existing embedding as numbers",
    "tl.score_integration": "returns the scIB metrics of existing embeddings as a table",
}

_PARAM_HEADER = re.compile(r"^\s*Parameters\s*\n\s*-{3,}\s*$", re.MULTILINE)
_SECTION = re.compile(r"^\s*[A-Z][A-Za-z ]+\s*\n\s*-{3,}\s*$", re.MULTILINE)


def _exported_functions() -> list[tuple[str, Callable]]:
    found = []
    for prefix, namespace in NAMESPACES.items():
        for name in namespace.__all__:
            obj = getattr(namespace, name)
            if inspect.isfunction(obj):
                found.append((f"{prefix}.{name}", obj))
    return found


FUNCTIONS = _exported_functions()
IDS = [name for name, _ in FUNCTIONS]


def _documented_params(func: Callable) -> set[str]:
    """Names in the numpy ``Parameters`` section (``a, b`` lines and ``**kwargs`` included)."""
    doc = inspect.getdoc(func) or ""
    header = _PARAM_HEADER.search(doc)
    if header is None:
        return set()
    body = doc[header.end() :]
    following = _SECTION.search(body)
    body = body[: following.start()] if following else body
    names: set[str] = set()
    for line in body.splitlines():
        if line and not line[0].isspace():
            names.update(part.strip().lstrip("*") for part in line.split(","))
    return names


def test_namespaces_export_functions() -> None:
    assert {name.split(".")[0] for name in IDS} == set(NAMESPACES)


@pytest.mark.parametrize("exceptions", [NOT_ADATA_FIRST, TL_WRITES_NOTHING])
def test_exception_lists_name_exported_functions(exceptions: dict[str, str]) -> None:
    stale = set(exceptions) - set(IDS)
    assert not stale, f"exception entries for functions that are not exported: {sorted(stale)}"
    assert all(reason.strip() for reason in exceptions.values())


@pytest.mark.parametrize(("name", "func"), FUNCTIONS, ids=IDS)
def test_adata_comes_first(name: str, func: Callable) -> None:
    first = next(iter(inspect.signature(func).parameters))
    if name in NOT_ADATA_FIRST:
        assert first != "adata", f"{name} takes adata first: remove it from NOT_ADATA_FIRST"
    else:
        assert first == "adata", f"{name}: first parameter is {first!r}, expected 'adata'"


@pytest.mark.parametrize(("name", "func"), FUNCTIONS, ids=IDS)
def test_at_most_two_positional_parameters(name: str, func: Callable) -> None:
    kinds = [p.kind for p in inspect.signature(func).parameters.values()]
    assert inspect.Parameter.VAR_POSITIONAL not in kinds, f"{name} takes *args"
    positional = [
        k
        for k in kinds
        if k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    assert len(positional) <= 2, f"{name}: put '*' after the first one or two parameters"


@pytest.mark.parametrize(("name", "func"), FUNCTIONS, ids=IDS)
def test_copy_defaults_to_false_and_may_return_none(name: str, func: Callable) -> None:
    sig = inspect.signature(func)
    copy = sig.parameters.get("copy")
    if copy is None:
        return
    assert copy.kind is inspect.Parameter.KEYWORD_ONLY, f"{name}: copy must be keyword-only"
    assert copy.default is False, f"{name}: copy must default to False"
    returns = str(sig.return_annotation)
    assert "AnnData" in returns, f"{name} must return 'AnnData | None'"
    assert "None" in returns, f"{name} must return 'AnnData | None'"


@pytest.mark.parametrize(("name", "func"), FUNCTIONS, ids=IDS)
def test_key_added_is_a_keyword_with_a_name(name: str, func: Callable) -> None:
    params = inspect.signature(func).parameters
    if name.startswith("tl.") and name not in TL_WRITES_NOTHING:
        assert "key_added" in params, f"{name} writes into adata: add a key_added parameter"
        assert "copy" in params, f"{name} writes into adata: add copy=False"
    key_added = params.get("key_added")
    if key_added is not None:
        assert key_added.kind is inspect.Parameter.KEYWORD_ONLY
        assert isinstance(key_added.default, str), name
        assert key_added.default, name


@pytest.mark.parametrize(("name", "func"), [f for f in FUNCTIONS if f[0].startswith("pl.")])
def test_plots_take_show(name: str, func: Callable) -> None:
    show = inspect.signature(func).parameters.get("show")
    assert show is not None, f"{name}: add a keyword-only show parameter"
    assert show.kind is inspect.Parameter.KEYWORD_ONLY, name


@pytest.mark.parametrize(("name", "func"), FUNCTIONS, ids=IDS)
def test_every_parameter_is_documented(name: str, func: Callable) -> None:
    documented = _documented_params(func)
    missing = [p for p in inspect.signature(func).parameters if p not in documented]
    assert not missing, f"{name}: parameters missing from the docstring: {missing}"
