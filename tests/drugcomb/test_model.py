from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from xtrimogene_sc.drugcomb import DrugCombinationModel, SynergyConfig, SynergyModule


def _swap(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"drug_a": "drug_b", "drug_b": "drug_a"})


def _split(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    test = rows["cell_line"].isin(["line0", "line1"]).to_numpy() & (np.arange(len(rows)) % 2 == 0)
    return rows[~test], rows[test]


@pytest.fixture(scope="module")
def trained(synthetic):
    torch.set_num_threads(1)  # module fixtures run before the per-test thread setting
    train, _ = _split(synthetic["combinations"])
    models = {}
    for task in ("classification", "regression"):
        model = DrugCombinationModel(
            synthetic["drugs"], synthetic["cells"], cell_key="X_feat", task=task,
            hidden_dim=64, drug_dim=32, cell_dim=16,
        )  # fmt: skip
        model.train(train, max_epochs=60, batch_size=64, lr=3e-3, seed=0)
        models[task] = model
    return models


@pytest.mark.parametrize("architecture", ["symmetric", "concat"])
@pytest.mark.parametrize("cell_key", ["X_feat", None])
def test_predictions_do_not_depend_on_drug_order(synthetic, architecture, cell_key):
    rows = synthetic["combinations"]
    model = DrugCombinationModel(
        synthetic["drugs"], synthetic["cells"] if cell_key else None, cell_key=cell_key,
        architecture=architecture, hidden_dim=32, drug_dim=16, cell_dim=8,
    )  # fmt: skip
    model.train(rows, max_epochs=2, seed=1)
    forward, backward = model.predict(rows), model.predict(_swap(rows))
    assert np.array_equal(forward, backward)  # exactly, not approximately
    assert len(np.unique(forward)) > 10


def test_symmetric_module_is_invariant_before_training():
    torch.manual_seed(0)
    config = SynergyConfig(n_drug_features=20, n_cell_features=5, drug_dim=8, cell_dim=4)
    module = SynergyModule(config, torch.rand(7, 20), torch.randn(3, 5)).eval()
    a, b = torch.randint(0, 7, (50,)), torch.randint(0, 7, (50,))
    cell = torch.randint(0, 3, (50,))
    assert torch.equal(module(a, b, cell), module(b, a, cell))
    concat = SynergyModule(
        SynergyConfig(20, 5, architecture="concat"), torch.rand(7, 20), torch.randn(3, 5)
    )
    assert not torch.equal(concat.eval()(a, b, cell), concat(b, a, cell))  # needs the averaging


def test_classification_learns_the_synthetic_rule(trained, synthetic):
    _, test = _split(synthetic["combinations"])
    labelled = test[test["label"].notna()]
    proba = trained["classification"].predict(labelled)
    assert ((proba > 0) & (proba < 1)).all()
    assert roc_auc_score(labelled["label"], proba) > 0.8
    history = trained["classification"].history
    assert list(history.columns) == ["train_loss", "validation_loss"]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


def test_regression_predicts_on_the_loewe_scale(trained, synthetic):
    _, test = _split(synthetic["combinations"])
    model = trained["regression"]
    predicted = model.predict(test)
    truth = test["synergy_loewe"].to_numpy()
    assert np.corrcoef(predicted, truth)[0, 1] > 0.5
    assert abs(predicted.mean() - truth.mean()) < truth.std()
    assert model.target_std > 1  # trained on standardised scores, predicted on the raw scale


def test_save_and_load_roundtrip(trained, synthetic, tmp_path):
    rows = synthetic["combinations"]
    for task, model in trained.items():
        path = tmp_path / task
        model.save(path)
        assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
        meta = json.loads((path / "config.json").read_text())
        assert meta["task"] == task
        assert meta["drugs"] == list(synthetic["drugs"].index)
        loaded = DrugCombinationModel.load(path)
        assert np.array_equal(loaded.predict(rows), model.predict(rows))
        assert repr(loaded) == repr(model)
        with pytest.raises(FileExistsError, match="overwrite=True"):
            model.save(path)
        model.save(path, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left over
    with pytest.raises(FileNotFoundError, match="nothing: no such model directory"):
        DrugCombinationModel.load(tmp_path / "nothing")


def test_unknown_drugs_and_cell_lines_are_refused(trained, synthetic):
    rows = synthetic["combinations"].iloc[:3].copy()
    model = trained["classification"]
    rows.loc[rows.index[0], "drug_b"] = "unobtainium"
    with pytest.raises(
        ValueError, match=r"1 drug\(s\) not in the model's feature table: \['unobtainium'\]"
    ):
        model.predict(rows)
    rows = synthetic["combinations"].iloc[:3].copy()
    rows["cell_line"] = ["line0", "HeLa", "MCF7"]
    with pytest.raises(ValueError, match=r"2 cell line\(s\) .*\['HeLa', 'MCF7'\]"):
        model.predict(rows)
    with pytest.raises(KeyError, match="lack the column"):
        model.predict(rows.drop(columns="cell_line"))


def test_drugs_only_model_needs_no_cell_lines(synthetic):
    rows = synthetic["combinations"]
    model = DrugCombinationModel(synthetic["drugs"], cell_key=None, task="regression")
    model.train(rows, max_epochs=2)
    assert model.predict(rows.drop(columns="cell_line")).shape == (len(rows),)
    assert "no cell features" in repr(model)


def test_bad_setup_is_explained(synthetic):
    drugs, cells, rows = synthetic["drugs"], synthetic["cells"], synthetic["combinations"]
    with pytest.raises(KeyError, match=r"not in cell_lines.obsm \(keys: \['X_feat'\]\)"):
        DrugCombinationModel(drugs, cells, cell_key="X_xtg")
    with pytest.raises(ValueError, match="needs an AnnData of cell lines"):
        DrugCombinationModel(drugs, None, cell_key="X_feat")
    with pytest.raises(ValueError, match="task must be"):
        DrugCombinationModel(drugs, cells, cell_key="X_feat", task="ranking")
    nan_drugs = drugs.copy()
    nan_drugs.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        DrugCombinationModel(nan_drugs, cells, cell_key="X_feat")
    model = DrugCombinationModel(drugs, cells, cell_key="X_feat")
    with pytest.raises(RuntimeError, match="not trained"):
        model.predict(rows)
    with pytest.raises(ValueError, match="must hold 0, 1 or NaN"):
        model.train(rows.assign(label=rows["synergy_loewe"]))
    with pytest.raises(KeyError, match=r"combinations lack the column\(s\) \['label'\]"):
        model.train(rows.drop(columns="label"))


def test_model_from_smiles(smiles):
    names = list(smiles)
    pairs = zip(names, names[1:] + names[:1], strict=True)
    rows = pd.DataFrame(
        [(a, b, "any", float(i % 3 == 0)) for i, (a, b) in enumerate(pairs)],
        columns=["drug_a", "drug_b", "cell_line", "label"],
    )
    model = DrugCombinationModel(smiles, cell_key=None, n_bits=128, hidden_dim=16, drug_dim=8)
    assert model.featurization == {"kind": "morgan", "radius": 2, "n_bits": 128}
    model.train(rows, max_epochs=2, validation_size=0)
    assert np.array_equal(model.predict(rows), model.predict(_swap(rows)))
    with pytest.raises(
        ValueError, match="drug 'broken': RDKit cannot parse the SMILES 'C1CC\\(\\('"
    ):
        DrugCombinationModel({**smiles, "broken": "C1CC(("}, cell_key=None)


def test_concat_first_layer_is_the_linear_map_of_the_concatenated_inputs():
    torch.manual_seed(0)
    config = SynergyConfig(n_drug_features=20, n_cell_features=5, architecture="concat")
    module = SynergyModule(config, torch.rand(7, 20), torch.randn(3, 5)).eval()
    a, b = torch.randint(0, 7, (50,)), torch.randint(0, 7, (50,))
    cell = torch.randint(0, 3, (50,))
    inputs = torch.cat([module.drug_table[a], module.drug_table[b], module.cell_table[cell]], 1)
    expected = module.head(inputs).squeeze(1)
    torch.testing.assert_close(module(a, b, cell), expected)
