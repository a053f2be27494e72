"""A model with a gene panel (``input_positions``) reads only those genes, wherever it is used."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from xtrimogene_sc._constants import TOKENS
from xtrimogene_sc.data._tokenize import tokenize_counts
from xtrimogene_sc.module import XTrimoGeneConfig, XTrimoGeneModule


def _cells(n_cells=5, n_genes=200, seed=0):
    rng = np.random.default_rng(seed)
    x = sp.random(n_cells, n_genes, density=0.2, format="csr", random_state=seed,
                  data_rvs=lambda n: rng.integers(1, 20, n)).astype(np.float32)  # fmt: skip
    x = x + sp.csr_matrix((np.ones(n_cells), (np.arange(n_cells), np.arange(n_cells))),
                          shape=x.shape)  # fmt: skip
    return tokenize_counts(x, np.arange(100, 100 + n_genes))


def _panel_module(tiny_config, positions, **overrides):
    torch.manual_seed(0)
    return XTrimoGeneModule(tiny_config.replace(input_positions=positions, **overrides)).eval()


def test_select_genes_keeps_only_allowed_entries_row_by_row():
    cells = _cells()
    allowed = torch.zeros(TOKENS.N_GENES, dtype=torch.bool)
    allowed[100:150] = True
    kept = cells.select_genes(allowed)
    rows, kept_rows = cells.row_ids(), kept.row_ids()
    for r in range(cells.n_cells):
        mine = cells.pos[rows == r]
        assert torch.equal(kept.pos[kept_rows == r], mine[mine < 150])
    assert torch.equal(kept.depth_s, cells.depth_s)  # depth still counts every gene
    assert bool(allowed[kept.pos].all())


def test_embedding_ignores_genes_outside_the_panel(tiny_config):
    cells = _cells()
    panel = tuple(range(100, 160))
    m = _panel_module(tiny_config, panel)
    allowed = torch.zeros(TOKENS.N_GENES, dtype=torch.bool)
    allowed[list(panel)] = True
    with torch.no_grad():
        for pooling in ("concat", "mean", "max"):
            full = m.embed_cells(cells, pooling=pooling)
            only_panel = m.embed_cells(cells.select_genes(allowed), pooling=pooling)
            torch.testing.assert_close(full, only_panel)
        # without a panel the other genes do change the embedding
        free = XTrimoGeneModule(tiny_config.replace()).eval()
        free.load_state_dict(m.state_dict())
        assert not torch.allclose(free.embed_cells(cells), m.embed_cells(cells))


@pytest.mark.parametrize("scope", ["observed", "vocabulary"])
@pytest.mark.parametrize("decoder_mode", ["masked", "full"])
def test_training_masks_and_scores_only_panel_genes(tiny_config, scope, decoder_mode):
    cells = _cells()
    panel = tuple(range(120, 170))
    m = _panel_module(tiny_config, panel, zero_mask_scope=scope, decoder_mode=decoder_mode,
                      mask_ratio_zero=0.5).train()  # fmt: skip
    out = m(cells, generator=torch.Generator().manual_seed(0))
    assert out.n_masked > 0
    assert out.positions.min() >= 120
    assert out.positions.max() < 170
    out.loss.backward()


def test_config_checks_the_panel_and_round_trips_through_json():
    config = XTrimoGeneConfig.preset("tiny", input_positions=[3, 7, 9])
    assert config.input_positions == (3, 7, 9)
    again = XTrimoGeneConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    for bad, words in [([], "at least one"), ([7, 3], "increasing"), ([3, 3], "increasing"),
                       ([-1, 4], "must lie"), ([TOKENS.N_GENES], "must lie")]:  # fmt: skip
        with pytest.raises(ValueError, match=words):
            XTrimoGeneConfig.preset("tiny", input_positions=bad)
    assert XTrimoGeneModule(XTrimoGeneConfig.preset("tiny")).input_panel is None
    # the panel is rebuilt from the config, never stored among the weights
    m = XTrimoGeneModule(config)
    assert "input_panel" not in m.state_dict()
