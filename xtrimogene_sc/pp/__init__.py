from __future__ import annotations

from xtrimogene_sc.pp._check import check_input
from xtrimogene_sc.pp._genes import highly_variable_genes

__all__ = ["check_input", "highly_variable_genes"]
