from __future__ import annotations

from xtrimogene_sc.pp._check import check_input

__all__ = ["check_input"]
