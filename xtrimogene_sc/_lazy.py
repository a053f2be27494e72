"""Names of a package that load on first use (PEP 562), so importing the package stays cheap.

``import xtrimogene_sc`` must not pay for torch, anndata and scvi-tools before something needs
them, the torch layers must not pull anndata in through ``xtrimogene_sc.data``, and ``xtg.model``
re-exports the task models without an import circle. Each of those ``__init__`` files hands its
table of names to :func:`lazy_names`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``.

    ``names`` maps each name to the module that defines it; a name that maps to
    ``f"{package}.{name}"`` is that submodule itself. A loaded name is stored on the package, so
    later look-ups do not come back here.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        module = importlib.import_module(names[name])
        value = module if names[name] == f"{package}.{name}" else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return __getattr__, __dir__
