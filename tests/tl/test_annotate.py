from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

import xtrimogene_sc as xtg
from xtrimogene_sc.tl._probe import EmbeddingProbe
from xtrimogene_sc.train._calibration import expected_calibration_error, fit_temperature


def _blobs(n_per_class: int, *, seed: int, spread: float = 1.0) -> ad.AnnData:
    """Cells with a 2-class-per-axis Gaussian embedding in obsm['X_emb'] and labels in obs."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    labels = np.repeat(["a", "b", "c"], n_per_class)
    emb = centres[np.repeat(np.arange(3), n_per_class)] + spread * rng.normal(
        size=(len(labels), 3)
    )
    adata = ad.AnnData(
        obs=pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(len(labels))])
    )
    adata.obsm["X_emb"] = emb
    return adata


def _split_synthetic() -> tuple[ad.AnnData, ad.AnnData]:
    """The cells the session model was trained on, split into reference and query."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = xtg.datasets.synthetic_counts(n_obs=300, n_vars=400, seed=1)
    return data[:200].copy(), data[200:].copy()


@pytest.mark.parametrize("method", ["knn", "logreg"])
def test_annotate_use_rep_writes_fields(method):
    reference, query = _blobs(60, seed=0), _blobs(30, seed=1)
    xtg.tl.annotate(
        query, reference=reference, labels_key="cell_type", method=method, use_rep="X_emb"
    )
    labels = query.obs["xtg_label"]
    assert isinstance(labels.dtype, pd.CategoricalDtype)
    probs = query.obsm["xtg_label_probabilities"]
    assert probs.shape == (90, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    params = query.uns["xtg_label"]["params"]
    assert params["classes"] == ["a", "b", "c"]
    assert params["method"] == method
    np.testing.assert_allclose(query.obs["xtg_label_confidence"], probs.max(axis=1))
    called = labels != "Unknown"
    truth = query.obs["cell_type"].astype(str)
    assert (labels[called].astype(str) == truth[called]).mean() > 0.9


def test_annotate_unknown_threshold_and_copy():
    reference, query = _blobs(40, seed=0, spread=2.0), _blobs(20, seed=1, spread=2.0)
    kwargs = {"reference": reference, "labels_key": "cell_type", "use_rep": "X_emb"}
    strict = xtg.tl.annotate(query, unknown_threshold=1.0, copy=True, **kwargs)
    lenient = xtg.tl.annotate(query, unknown_threshold=0.0, copy=True, **kwargs)
    assert "xtg_label" not in query.obs  # copy=True leaves the input alone
    assert (strict.obs["xtg_label"] == "Unknown").all()
    assert not (lenient.obs["xtg_label"] == "Unknown").any()
    assert strict.uns["xtg_label"]["params"]["unknown_threshold"] == 1.0


def test_annotate_drops_single_cell_labels_with_warning():
    reference, query = _blobs(30, seed=0), _blobs(10, seed=1)
    reference.obs["cell_type"] = reference.obs["cell_type"].astype(object)
    reference.obs.iloc[0, 0] = "singleton"
    with pytest.warns(UserWarning, match="'singleton' \\(1 cells\\)"):
        xtg.tl.annotate(query, reference=reference, labels_key="cell_type", use_rep="X_emb")
    params = query.uns["xtg_label"]["params"]
    assert "singleton" not in params["classes"]
    assert params["dropped_labels"] == ["singleton"]


def test_annotate_ignores_nan_labels_with_warning():
    reference, query = _blobs(30, seed=0), _blobs(10, seed=1)
    reference.obs["cell_type"] = reference.obs["cell_type"].astype(object)
    reference.obs.iloc[:5, 0] = np.nan
    with pytest.warns(UserWarning, match="5 cells have no label"):
        xtg.tl.annotate(query, reference=reference, labels_key="cell_type", use_rep="X_emb")
    assert query.uns["xtg_label"]["params"]["n_reference_cells"] == 85


def test_annotate_input_errors():
    reference, query = _blobs(10, seed=0), _blobs(5, seed=1)
    with pytest.raises(ValueError, match="obsm\\['X_missing'\\] is missing in the reference"):
        xtg.tl.annotate(query, reference=reference, labels_key="cell_type", use_rep="X_missing")
    with pytest.raises(ValueError, match="not an obs column"):
        xtg.tl.annotate(query, reference=reference, labels_key="nope", use_rep="X_emb")
    with pytest.raises(ValueError, match="pass model="):
        xtg.tl.annotate(query, reference=reference, labels_key="cell_type")
    wide = query.copy()
    wide.obsm["X_emb"] = np.hstack([wide.obsm["X_emb"], wide.obsm["X_emb"]])
    with pytest.raises(ValueError, match="3 dimensions in the reference but 6 in the query"):
        xtg.tl.annotate(wide, reference=reference, labels_key="cell_type", use_rep="X_emb")
    query.obsm["X_emb"][0, 0] = np.nan
    with pytest.raises(ValueError, match="query contains NaN"):
        xtg.tl.annotate(query, reference=reference, labels_key="cell_type", use_rep="X_emb")
    one_label = reference[reference.obs["cell_type"] == "a"].copy()
    with pytest.raises(ValueError, match="at least two labels"):
        xtg.tl.annotate(query, reference=one_label, labels_key="cell_type", use_rep="X_emb")


def test_annotate_with_model_transfers_labels(trained_tiny_model):
    reference, query = _split_synthetic()
    for method in ("knn", "logreg"):
        xtg.tl.annotate(
            query,
            reference=reference,
            labels_key="labels",
            model=trained_tiny_model,
            method=method,
            unknown_threshold=0.0,
        )
        accuracy = (query.obs["xtg_label"].astype(str) == query.obs["labels"].astype(str)).mean()
        print(method, accuracy)
        assert accuracy > 0.6, (method, accuracy)
    assert query.obsm["xtg_label_probabilities"].shape == (100, 3)


def test_annotate_refuses_low_gene_overlap(trained_tiny_model):
    reference, _ = _split_synthetic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = xtg.datasets.synthetic_counts(n_obs=50, n_vars=400, seed=7)  # other genes
    with pytest.raises(ValueError, match="the reference measures only .* vocabulary genes"):
        xtg.tl.annotate(other, reference=reference, labels_key="labels", model=trained_tiny_model)


def test_annotate_reports_nan_counts_in_query(trained_tiny_model):
    reference, query = _split_synthetic()
    query.X.data[0] = np.nan
    with pytest.raises(ValueError, match="cannot embed the query AnnData: .*NaN"):
        xtg.tl.annotate(query, reference=reference, labels_key="labels", model=trained_tiny_model)


def test_fit_temperature_recovers_known_temperature():
    rng = np.random.default_rng(0)
    logits = 3.0 * rng.normal(size=(4000, 4))
    y = np.array([rng.choice(4, p=p) for p in softmax(logits / 2.0, axis=1)])
    assert fit_temperature(logits, y) == pytest.approx(2.0, rel=0.1)


def test_calibration_lowers_ece_of_overconfident_probe():
    # Overlapping classes: raw kNN vote shares are overconfident; the temperature fixes that.
    reference, query = _blobs(200, seed=0, spread=2.5), _blobs(200, seed=1, spread=2.5)
    y = np.searchsorted(["a", "b", "c"], query.obs["cell_type"])
    eces = {}
    for calibrate in (False, True):
        probe = EmbeddingProbe("knn", n_neighbors=5, calibrate=calibrate)
        probe.fit(reference.obsm["X_emb"], reference.obs["cell_type"].to_numpy())
        eces[calibrate] = expected_calibration_error(probe.predict_proba(query.obsm["X_emb"]), y)
    assert eces[True] < eces[False]
    assert eces[True] < 0.08


def test_expected_calibration_error_extremes():
    y = np.array([0, 1, 0, 1])
    confident_right = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(confident_right, y) == pytest.approx(0.0)
    confident_wrong = confident_right[:, ::-1]
    assert expected_calibration_error(confident_wrong, y) == pytest.approx(1.0)
