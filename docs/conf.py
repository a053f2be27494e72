"""Sphinx configuration for the xtrimogene_sc documentation (offline build, no notebook runs).

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` after
``pip install -e '.[doc]'``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))  # import the source tree even when not installed

# sphinx-autodoc-typehints (the last release for Python 3.11 / Sphinx 9.0) calls a deprecated Sphinx
# API; that is for its maintainers, not a problem of these docs.
warnings.filterwarnings("ignore", message=".*set_application.*is deprecated")

# -- project -----------------------------------------------------------------------------------
project = "xtrimogene_sc"
author = "xtrimogene_sc developers"
copyright = f"{date.today().year}, {author}"
try:
    release = version("xtrimogene-sc")
except PackageNotFoundError:
    release = "0.0.0+unknown"
version = ".".join(release.split(".")[:2])

# -- extensions --------------------------------------------------------------------------------
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
    "sphinx_autodoc_typehints",  # after napoleon, so types from signatures reach the fields
    "sphinx_copybutton",
    "sphinxcontrib.bibtex",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
master_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = ["_templates"]  # class pages list only members defined in this package

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "amsmath", "attrs_inline"]
myst_heading_anchors = 3

# autosummary writes one stub page per object into ``generated/`` (never committed: the folder
# ignores itself, see ``_ignore_generated`` below).
autosummary_generate = True
autosummary_imported_members = True
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": False}
# Overridden Lightning hooks (training_step, ...) would otherwise show Lightning's own docstrings,
# which use Lightning's Sphinx roles and directives.
autodoc_inherit_docstrings = False
autodoc_typehints = "description"  # rendered by sphinx-autodoc-typehints from the signatures
typehints_document_rtype = True
always_use_bars_union = True
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_use_ivar = True  # "Attributes" as fields: dataclass fields are also documented as members
napoleon_custom_sections = [("Params", "Parameters")]

# The build machine is offline: no inventories are fetched. Add entries here only for builds
# with network access, e.g. ``{"anndata": ("https://anndata.readthedocs.io/en/stable/", None)}``.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

# Types from third-party packages cannot be resolved without intersphinx inventories; the
# references still render as code, only the link is missing.
nitpicky = False
suppress_warnings: list[str] = []

bibtex_bibfiles = ["references.bib"]
bibtex_default_style = "plain"
bibtex_reference_style = "author_year"

# -- HTML --------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "xtrimogene_sc"
html_theme_options = {"show_toc_level": 2}
html_static_path: list[str] = []
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True


def _fresh_generated(app) -> None:
    """Empty ``docs/generated`` (autosummary stubs) before autosummary refills it.

    Stale stubs of names that left the API would otherwise still be built. The folder holds a
    ``.gitignore`` of ``*`` so that the stubs never show up in ``git status``.
    """
    out = HERE / "generated"
    if out.is_dir():
        for stub in out.glob("*.rst"):
            stub.unlink()
    out.mkdir(exist_ok=True)
    (out / ".gitignore").write_text("*\n")


# Guides written alongside new modules are globbed into the toctree of index.md, so the site
# builds before they exist. Sphinx 9.0 logs an empty glob without a warning type, so
# ``suppress_warnings`` cannot silence it; this filter drops exactly those warnings.
OPTIONAL_GUIDES = ("annotation*", "pretraining*")


class _AllowMissingGuides(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "subtype", None) != "empty_glob":
            return True
        return not any(repr(pattern) in record.getMessage() for pattern in OPTIONAL_GUIDES)


def setup(app) -> None:
    for handler in logging.getLogger("sphinx").handlers:
        handler.filters.insert(0, _AllowMissingGuides())  # before Sphinx counts the warning
    # priority < 500: run before autosummary's own builder-inited handler generates the stubs
    app.connect("builder-inited", _fresh_generated, priority=100)
