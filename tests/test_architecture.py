"""The package's modules import each other without circles, lazy and type-only imports included.

A circle means two modules each need the other; the shared piece belongs in a module below both.
Package ``__init__`` files only re-export, so they are left out of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "xtrimogene_sc"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    inits = {name for name, p in modules.items() if p.name == "__init__.py"}
    graph: dict[str, set[str]] = {name: set() for name in modules if name not in inits}
    for name in graph:
        path = modules[name]
        package = name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                for candidate in (f"{target}.{alias.name}", target):
                    if candidate in graph and candidate != name:
                        graph[name].add(candidate)
                        break
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "active"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "active":
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found


def test_the_graph_is_read():
    graph = _import_graph()
    assert "xtrimogene_sc.model._model" in graph["xtrimogene_sc.annotation._model"]
    assert "xtrimogene_sc.module._module" in graph["xtrimogene_sc.model._model"]


def test_no_import_circles():
    cycles = _cycles(_import_graph())
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_torch_layers_never_import_user_facing_code():
    graph = _import_graph()
    low = [m for m in graph if m.split(".")[1] in ("nn", "module", "data")]
    high = (
        "xtrimogene_sc.model",
        "xtrimogene_sc.tl",
        "xtrimogene_sc.pl",
        "xtrimogene_sc.pretrain",
        "xtrimogene_sc.annotation",
        "xtrimogene_sc.perturbation",
        "xtrimogene_sc.drugcomb",
    )
    upward = {m: sorted(t for t in graph[m] if t.startswith(high)) for m in low}
    assert not {m: t for m, t in upward.items() if t}


def test_the_shared_base_imports_nothing_above_it():
    """``base`` (saving, loading, checksums) serves every model, so it may not depend on one."""
    graph = _import_graph()
    base = [m for m in graph if m.startswith("xtrimogene_sc.base.")]
    assert base
    outside = {
        m: sorted(t for t in graph[m] if not t.startswith("xtrimogene_sc.base.")) for m in base
    }
    assert not {m: t for m, t in outside.items() if t}


TASK_PACKAGES = ("annotation", "perturbation", "drugcomb")


def _task_of(module: str) -> str | None:
    """The task package a module belongs to (None: the core or the shared base)."""
    package = module.split(".")[1]
    return package if package in TASK_PACKAGES else None


SHARED = ("base", "nn", "data", "module", "model", "train", "_arguments", "_constants", "_lazy")


def test_task_packages_build_only_on_the_core_and_the_shared_base():
    graph = _import_graph()
    outside = {
        m: sorted(t for t in targets if t.split(".")[1] not in (*SHARED, _task_of(m)))
        for m, targets in graph.items()
        if _task_of(m) is not None
    }
    assert not {m: t for m, t in outside.items() if t}


def test_task_models_never_import_each_other():
    graph = _import_graph()
    assert {_task_of(m) for m in graph} >= set(TASK_PACKAGES)
    crossing = {
        m: sorted(t for t in targets if _task_of(t) not in (None, _task_of(m)))
        for m, targets in graph.items()
        if _task_of(m) is not None
    }
    assert not {m: t for m, t in crossing.items() if t}


CORE = ("nn", "data", "module", "model")  # each may use the ones before it, never after


def test_every_arrow_in_the_core_points_down():
    graph = _import_graph()
    level = {name: i for i, name in enumerate(CORE)}
    upward = {}
    for module, targets in graph.items():
        package = module.split(".")[1]
        if package not in level:
            continue
        wrong = [
            t for t in targets
            if level.get(t.split(".")[1], -1) > level[package]
            or t.split(".")[1] in (*TASK_PACKAGES, "tl", "pl")
        ]  # fmt: skip
        if wrong:
            upward[module] = sorted(wrong)
    assert not upward, upward
