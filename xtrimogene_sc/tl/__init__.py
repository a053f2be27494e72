from __future__ import annotations

from xtrimogene_sc.tl._embed import embed

__all__ = ["embed"]
