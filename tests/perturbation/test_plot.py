from __future__ import annotations

import matplotlib as mpl
import pytest

mpl.use("Agg")
import matplotlib.pyplot as plt

import xtrimogene_sc as xtg
from xtrimogene_sc.model import PerturbationBaseline


@pytest.fixture
def prediction(exact_perturbation_data):
    build = exact_perturbation_data
    adata = build()
    xtg.XTrimoGenePerturbation.setup_anndata(adata)
    combo = f"{build.names['A']}+{build.names['B']}"
    train = adata[(adata.obs["condition"] != combo).to_numpy()].copy()
    baseline = PerturbationBaseline(train, method="additive")
    baseline.train()
    yield baseline.predict(train, [combo], aggregate="mean"), adata, combo
    plt.close("all")


def test_response_scatter_of_an_exact_prediction(prediction):
    pred, observed, combo = prediction
    ax = xtg.pl.perturbation_response(
        pred, observed=observed, condition=combo, n_top_de=4, show=False
    )
    assert "Pearson 1.00 (all), 1.00 (DE)" in ax.get_title()
    all_genes, de = ax.collections[:2]
    assert len(all_genes.get_offsets()) == pred.n_vars
    assert len(de.get_offsets()) == 4
    assert ax.get_xlabel() == "observed change from control"


def test_response_scatter_names_what_is_available(prediction):
    pred, observed, _ = prediction
    with pytest.raises(ValueError, match="available"):
        xtg.pl.perturbation_response(pred, observed=observed, condition="KLF1", show=False)
