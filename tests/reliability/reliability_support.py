"""Helpers of the reliability suite: the table row type, tiny data, a tiny untrained model.

Everything is small (a 1-2 layer model of width 16-32, tens of cells): these tests check what
happens with bad input, not what the model learns.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata as ad
import pytest
import torch

import xtrimogene_sc as xtg

TINY = {
    "encoder_dim": 32, "encoder_heads": 2, "decoder_dim": 16, "decoder_heads": 2,
    "decoder_nb_features": 8, "bin_num": 16, "decoder_mode": "masked",
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One row of a reliability table: a bad input to an entry point and the answer expected.

    ``call(env, tmp_path)`` performs the call; ``error`` is the exception type (or, for inputs
    that are accepted with a warning, the warning category) and ``fragment`` a piece of its
    message; ``issue`` names the item of issue 11 it covers ("new": a case the same patterns
    suggested beyond the issue's list; "held": behaviour that was already right, kept as a row).
    """

    id: str
    call: Any
    error: type[BaseException]
    fragment: str
    issue: str

    def param(self) -> Any:
        return pytest.param(self, id=self.id)

    def check(self, env: dict[str, Any], tmp_path: Path) -> None:
        """Run the call and assert the exception (or warning) type and message fragment."""
        expect = pytest.warns if issubclass(self.error, Warning) else pytest.raises
        with expect(self.error, match=re.escape(self.fragment)):
            self.call(env, tmp_path)


def quiet(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``func`` with UserWarnings (e.g. low vocabulary coverage) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return func(*args, **kwargs)


def cells(n_obs: int = 24, n_vars: int = 300, seed: int = 1) -> ad.AnnData:
    """Synthetic raw counts with real vocabulary symbols (``X`` and ``layers['counts']``)."""
    return xtg.datasets.synthetic_counts(n_obs=n_obs, n_vars=n_vars, density=0.2, seed=seed)


def tiny_model(adata: ad.AnnData | None = None, **overrides: Any) -> xtg.XTrimoGene:
    torch.manual_seed(0)
    return quiet(xtg.XTrimoGene, adata, preset="tiny", **{**TINY, **overrides})


def write_h5ad_files(folder: Path, n_files: int = 2, n_obs: int = 30, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        quiet(cells(n_obs=n_obs, seed=seed + i).write_h5ad, folder / f"part{i}.h5ad")
    return folder
