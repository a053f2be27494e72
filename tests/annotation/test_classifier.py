from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import xtrimogene_sc as xtg
from xtrimogene_sc.annotation._finetune import class_weights
from xtrimogene_sc.model import XTrimoGeneClassifier


@pytest.fixture(scope="module")
def labelled():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xtg.datasets.synthetic_counts(n_obs=300, n_vars=400, seed=1)


@pytest.fixture(scope="module")
def fitted(trained_tiny_model, labelled):
    torch.manual_seed(0)
    clf = XTrimoGeneClassifier(trained_tiny_model, n_trainable_layers=1, hidden_dim=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.train(labelled, labels_key="labels", max_epochs=4, batch_size=32, validation_size=0.2)
    return clf


def test_classifier_freezes_all_but_the_last_layer(trained_tiny_model, fitted):
    before = trained_tiny_model.module.state_dict()
    after = fitted.module.backbone.state_dict()
    last = len(fitted.module.backbone.encoder_blocks) - 1
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "fine-tuning changed nothing"
    allowed = (f"encoder_blocks.{last}.", "encoder_norm.")
    assert all(k.startswith(allowed) for k in changed), sorted(changed)
    assert any(k.startswith(f"encoder_blocks.{last}.") for k in changed)
    # the wrapped model is untouched
    assert trained_tiny_model.module.encoder_blocks[last].norm1.weight.requires_grad


def test_classifier_history_and_predictions(fitted, labelled):
    assert list(fitted.history.columns) == [
        "train_loss", "validation_loss", "validation_accuracy", "validation_macro_f1",
    ]  # fmt: skip
    assert 1 <= len(fitted.history) <= 4
    labels, proba = fitted.predict(labelled, return_probabilities=True)
    assert isinstance(proba, pd.DataFrame)
    assert list(proba.columns) == ["type_0", "type_1", "type_2"]
    assert proba.index.equals(labelled.obs_names)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    accuracy = (labels == labelled.obs["labels"].astype(str).to_numpy()).mean()
    assert accuracy > 0.6
    assert fitted.temperature_ > 0


def test_classifier_save_load_roundtrip(fitted, labelled, tmp_path):
    fitted.save(tmp_path / "clf")
    with pytest.raises(FileExistsError):
        fitted.save(tmp_path / "clf")
    loaded = XTrimoGeneClassifier.load(tmp_path / "clf")
    np.testing.assert_allclose(
        loaded.predict_proba(labelled[:40]), fitted.predict_proba(labelled[:40]), atol=1e-5
    )
    assert loaded.temperature_ == pytest.approx(fitted.temperature_)
    assert list(loaded.classes_) == list(fitted.classes_)
    assert len(loaded.history) == len(fitted.history)


def test_annotate_accepts_a_classifier(fitted, labelled):
    query = labelled[:50].copy()
    xtg.tl.annotate(query, model=fitted, unknown_threshold=0.0)
    assert query.uns["xtg_label"]["params"]["method"] == "classifier"
    expected = fitted.predict(query)
    np.testing.assert_array_equal(query.obs["xtg_label"].astype(str).to_numpy(), expected)


def test_classifier_input_errors(trained_tiny_model, labelled, tmp_path):
    with pytest.raises(ValueError, match=r"n_trainable_layers must be an integer in \[0, "):
        XTrimoGeneClassifier(trained_tiny_model, n_trainable_layers=99)
    clf = XTrimoGeneClassifier(trained_tiny_model)
    with pytest.raises(RuntimeError, match="not trained"):
        clf.predict(labelled)
    trained_tiny_model.save(tmp_path / "pretrained")
    with pytest.raises(ValueError, match="not a classifier"):
        XTrimoGeneClassifier.load(tmp_path / "pretrained")
    bad = labelled[:60].copy()
    bad.obs["labels"] = "only_one"
    with pytest.raises(ValueError, match="at least two labels"):
        clf.train(bad, labels_key="labels", max_epochs=1)


def test_class_weights_are_capped():
    y = np.array([0] * 200 + [1] * 2 + [2] * 100)
    weights = class_weights(y, 4).numpy()
    assert weights[1] / weights[0] == pytest.approx(50.0)  # 100x rarer, capped at 50
    assert weights[2] / weights[0] == pytest.approx(2.0)
    assert weights[3] == 0.0
    assert weights.sum() == pytest.approx(1.0)


def test_classifier_retraining_starts_from_the_pretrained_weights(trained_tiny_model, labelled):
    subset = labelled[:90].copy()
    clf = XTrimoGeneClassifier(trained_tiny_model, hidden_dim=16)
    runs = []
    for _ in range(2):
        clf.train(subset, labels_key="labels", max_epochs=1, batch_size=32, validation_size=0.0)
        runs.append(clf.predict_proba(subset))
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-6)
    assert np.isnan(clf.history["validation_loss"]).all()
    assert clf.temperature_ == 1.0
