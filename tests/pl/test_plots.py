from __future__ import annotations

import anndata as ad
import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest

mpl.use("Agg")
import matplotlib.pyplot as plt

import xtrimogene_sc as xtg
from xtrimogene_sc.pl._plots import confusion_table


@pytest.fixture
def annotated() -> ad.AnnData:
    rng = np.random.default_rng(0)
    truth = np.repeat(["B", "NK", "T"], 20)
    predicted = truth.astype(object)
    predicted[:5] = "T"
    predicted[-3:] = "Unknown"
    adata = ad.AnnData(
        obs=pd.DataFrame(
            {
                "cell_type": pd.Categorical(truth),
                "xtg_label": pd.Categorical(predicted),
                "xtg_label_confidence": rng.uniform(0.3, 1.0, size=60).astype(np.float32),
            },
            index=[f"c{i}" for i in range(60)],
        )
    )
    adata.obsm["X_umap"] = rng.normal(size=(60, 2))
    return adata


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_umap_annotation_two_panels(annotated):
    fig = xtg.pl.umap_annotation(annotated, show=False)
    titles = [ax.get_title() for ax in fig.axes]
    assert "xtg_label" in titles
    assert "xtg_label_confidence" in titles
    assert len([t for t in titles if t]) == 2  # plus the colorbar of the confidence panel
    colors = dict(
        zip(
            annotated.obs["xtg_label"].cat.categories,
            annotated.uns["xtg_label_colors"],
            strict=True,
        )
    )
    assert colors["Unknown"] == "#d3d3d3"
    assert len(set(colors.values())) == len(colors)


def test_umap_annotation_needs_umap(annotated):
    del annotated.obsm["X_umap"]
    with pytest.raises(ValueError, match="sc.tl.umap"):
        xtg.pl.umap_annotation(annotated, show=False)
    annotated.obsm["X_umap"] = np.zeros((60, 2))
    with pytest.raises(ValueError, match="obs columns"):
        xtg.pl.umap_annotation(annotated, key="other", show=False)


def test_confusion_matrix_layout(annotated):
    ax = xtg.pl.confusion_matrix(annotated, true_key="cell_type", show=False)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["B", "NK", "T"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["B", "NK", "T", "Unknown"]
    image = ax.get_images()[0].get_array()
    np.testing.assert_allclose(image.sum(axis=1), 1.0)
    assert image[0, 0] == pytest.approx(0.75)  # 5 of 20 B cells called T


def test_confusion_table_counts(annotated):
    table = confusion_table(annotated, true_key="cell_type", pred_key="xtg_label", normalize=False)
    assert table.loc["B", "T"] == 5
    assert table.loc["T", "Unknown"] == 3
    assert table.to_numpy().sum() == 60


def test_training_curves_from_history_and_model(trained_tiny_model):
    history = pd.DataFrame({"train_loss": [1.0, 0.5, 0.4], "validation_loss": [1.1, 0.7, 0.6]})
    ax = xtg.pl.training_curves(history, show=False)
    assert len(ax.get_lines()) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train_loss", "validation_loss"]
    ax = xtg.pl.training_curves(trained_tiny_model, show=False)
    assert len(ax.get_lines()) == 2
    assert len(ax.get_lines()[0].get_xdata()) == 2  # two epochs
    with pytest.raises(ValueError, match="no train_loss"):
        xtg.pl.training_curves({}, show=False)
