from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pytest
import torch

import xtrimogene_sc as xtg
from xtrimogene_sc.model import PerturbationBaseline, XTrimoGenePerturbation

SIM = {
    "n_genes": 150, "n_programs": 4, "program_size": 20, "n_single": 16, "n_combos": 8,
    "cells_per_condition": 15, "n_control": 150,
}  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The head's tensors are small: a second thread only adds synchronisation, which costs a
    lot on a loaded machine (25x measured on the shared development box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_thread_per_test(_one_thread):
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sim():
    adata = xtg.datasets.synthetic_perturbseq(**SIM, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        XTrimoGenePerturbation.setup_anndata(adata)
    return adata


def _backbone(seed: int = 0) -> xtg.XTrimoGene:
    torch.manual_seed(seed)
    return xtg.XTrimoGene(None, preset="tiny", decoder_mode="masked")


def _held_out(sim) -> list[str]:
    """One perturbed program gene of each program, never seen in training."""
    program = sim.var["program"]
    singles = sorted({c for c in sim.obs["condition"].astype(str) if c != "ctrl" and "+" not in c})
    held = {}
    for gene in singles:
        held.setdefault(program[gene], gene)
    return [g for p, g in held.items() if p >= 0]


def _without(sim, genes: list[str]):
    conditions = sim.obs["condition"].astype(str)
    keep = [not (set(c.split("+")) & set(genes)) for c in conditions]
    return sim[np.asarray(keep)].copy()


def _scores(pred, observed) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = xtg.tl.perturbation_metrics(pred, observed=observed)
    return table[["pearson_delta_de", "mse_de"]].mean().to_dict()


@pytest.fixture(scope="module")
def trained(sim):
    model = XTrimoGenePerturbation(sim, backbone=_backbone(), hidden_dim=32)
    model.train(max_steps=250, batch_size=32)
    return model


def test_model_learns_known_effects_better_than_no_change(trained, sim):
    conditions = trained.training_conditions
    ctrl = sim[(sim.obs["condition"] == "ctrl").to_numpy()].copy()
    model_scores = _scores(trained.predict(ctrl, conditions, aggregate="mean"), sim)
    baseline = PerturbationBaseline(sim, method="no_change")
    baseline.train()
    no_change = _scores(baseline.predict(ctrl, conditions, aggregate="mean"), sim)
    assert model_scores["mse_de"] < 0.25 * no_change["mse_de"]
    assert model_scores["pearson_delta_de"] > 0.8
    assert trained.history["train_loss"].iloc[-1] < trained.history["train_loss"].iloc[0]


def test_prediction_layout(trained, sim, tmp_path):
    ctrl = sim[(sim.obs["condition"] == "ctrl").to_numpy()][:7].copy()
    gene = trained.training_conditions[0]
    pred = trained.predict(ctrl, ["ctrl", gene])
    assert pred.shape == (14, len(trained.var_names))
    assert pred.obs["condition"].tolist() == ["ctrl"] * 7 + [gene] * 7
    assert pred.obs["control_cell"].tolist()[:7] == list(ctrl.obs_names)
    assert pred.uns["xtg_perturbation_prediction"]["method"] == "xTrimoGene"
    pred.write_h5ad(tmp_path / "pred.h5ad")  # predictions and set-up data can be saved as h5ad
    sim.write_h5ad(tmp_path / "sim.h5ad")
    assert ad.read_h5ad(tmp_path / "pred.h5ad").uns["xtg_perturbation_prediction"]["setup"] == {
        "condition_key": "condition", "control": "ctrl", "condition_type": "genetic",
    }  # fmt: skip
    # "ctrl" leaves each cell's own log-normalised profile unchanged
    counts = ctrl.X.toarray()
    np.testing.assert_allclose(
        pred.X[:7], np.log1p(1e4 * counts / counts.sum(1, keepdims=True)), atol=1e-5
    )


def test_unseen_gene_is_predicted_through_gene_embeddings(sim):
    backbone = _backbone()
    positions = xtg.GeneVocab.default().positions(list(sim.var_names))
    program = sim.var["program"].to_numpy()
    generator = torch.Generator().manual_seed(0)
    centroids = torch.randn(5, backbone.config.encoder_dim, generator=generator)
    table = backbone.module.gene_embedding.weight.data
    for gene, k in zip(positions, program, strict=True):  # genes of a program look alike
        table[gene] = centroids[k] + 0.1 * torch.randn(table.shape[1], generator=generator)
    held_out = _held_out(sim)
    train = _without(sim, held_out)
    model = XTrimoGenePerturbation(train, backbone=backbone, hidden_dim=16)
    model.train(max_steps=250, batch_size=32)
    head = model.module.head
    assert head.log_sharpness > 1.5  # initial value: similar embeddings predict alike responses
    weights = head.attention(torch.as_tensor(xtg.GeneVocab.default().positions(held_out)))
    seen_program = program[sim.var_names.get_indexer(model.seen_)]
    for row, gene in zip(weights, held_out, strict=True):
        same = torch.as_tensor(seen_program == program[sim.var_names.get_loc(gene)])
        assert row[same].sum() > 0.5  # borrows mostly from genes of its own program
    ctrl = sim[(sim.obs["condition"] == "ctrl").to_numpy()].copy()
    observed = sim[sim.obs["condition"].isin(["ctrl", *held_out]).to_numpy()].copy()
    pred = model.predict(ctrl, ["ctrl", *held_out], aggregate="mean")
    # the knockdown of a gene never seen perturbed lowers that gene (the learned direct effect)
    assert head.direct_effect < 0
    for i, gene in enumerate(held_out, start=1):
        assert pred[i, gene].X[0, 0] < pred[0, gene].X[0, 0]
    model_scores = _scores(pred[1:].copy(), observed)
    mean_shift = PerturbationBaseline(train, method="mean_shift")
    mean_shift.train()
    baseline_scores = _scores(mean_shift.predict(ctrl, held_out, aggregate="mean"), observed)
    assert model_scores["mse_de"] < baseline_scores["mse_de"]


def test_sharpness_falls_on_uninformative_embeddings(sim):
    train = _without(sim, _held_out(sim))
    model = XTrimoGenePerturbation(train, backbone=_backbone(), hidden_dim=16)  # random table
    model.train(max_steps=250, batch_size=32)
    assert model.module.head.log_sharpness < 1.5  # towards uniform borrowing: the mean


def test_interaction_term_is_opt_in(sim, trained):
    assert not trained.module.head.out_interaction.weight.any()  # additive by default
    model = XTrimoGenePerturbation(sim, backbone=_backbone(), hidden_dim=16, interaction=True)
    model.train(max_steps=20, batch_size=32)
    assert model.module.head.out_interaction.weight.any()


def test_save_load_round_trip(trained, sim, tmp_path):
    ctrl = sim[(sim.obs["condition"] == "ctrl").to_numpy()][:20].copy()
    conditions = [trained.training_conditions[0], "ZNF703"]  # a seen and an unseen gene
    before = trained.predict(ctrl, conditions, aggregate="mean")
    trained.save(tmp_path / "pert")
    assert sorted(p.name for p in (tmp_path / "pert").iterdir()) == [
        "config.json", "model.safetensors", "vocab.tsv",
    ]  # fmt: skip
    with pytest.raises(FileExistsError, match="overwrite=True"):
        trained.save(tmp_path / "pert")
    loaded = XTrimoGenePerturbation.load(tmp_path / "pert")
    after = loaded.predict(ctrl, conditions, aggregate="mean")
    np.testing.assert_allclose(after.X, before.X, atol=1e-5)
    assert loaded.training_conditions == trained.training_conditions
    with pytest.raises(ValueError, match="loaded without training data"):
        loaded.train(max_steps=1)
    with pytest.raises(ValueError, match="holds a pretrained model, not a perturbation model"):
        XTrimoGenePerturbation.load(_save_backbone(tmp_path))


def _save_backbone(tmp_path):
    _backbone().save(tmp_path / "backbone")
    return tmp_path / "backbone"


def test_backbone_from_a_path_and_fine_tuning_the_last_layer(sim, tmp_path):
    path = _save_backbone(tmp_path)
    model = XTrimoGenePerturbation(sim, backbone=path, n_trainable_layers=1, hidden_dim=16)
    before = {k: v.clone() for k, v in model.module.backbone.state_dict().items()}
    model.train(max_steps=3, batch_size=8)
    after = model.module.backbone.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    last = len(model.module.backbone.encoder_blocks) - 1
    assert changed
    assert all(k.startswith((f"encoder_blocks.{last}.", "encoder_norm.")) for k in changed)


def test_treatment_model_learns_each_cell_types_response(exact_perturbation_data):
    build = exact_perturbation_data
    adata = build(cell_types=True, n_per_condition=8, conditions=["ctrl", "A"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        XTrimoGenePerturbation.setup_anndata(
            adata, cell_type_key="cell_type", condition_type="treatment"
        )
    model = XTrimoGenePerturbation(adata, backbone=_backbone(), hidden_dim=16)
    model.train(max_steps=200, batch_size=16)
    treatment = build.names["A"]
    pred = model.predict(adata, [treatment], aggregate="mean")
    assert pred.obs["cell_type"].tolist() == ["T1", "T2"]
    for row, offset in zip(pred.X, (0, 5), strict=True):
        np.testing.assert_allclose(row, np.log1p(build.profile("A", offset)), atol=0.05)
    with pytest.raises(ValueError, match="unknown treatment"):
        model.predict(adata, ["IFNG"])


# ---------------------------------------------------------------------- bad input
def test_condition_column_without_control_cells(sim):
    adata = sim[sim.obs["condition"] != "ctrl"].copy()
    with pytest.raises(ValueError, match="no control cells labelled 'ctrl'"):
        XTrimoGenePerturbation.setup_anndata(adata)
    with pytest.raises(ValueError, match="pass control="):
        XTrimoGenePerturbation.setup_anndata(sim.copy(), control="control")
    with pytest.raises(KeyError, match="not a column of adata.obs"):
        XTrimoGenePerturbation.setup_anndata(sim.copy(), condition_key="guide")


def test_gene_outside_the_vocabulary(sim, trained):
    adata = sim.copy()
    adata.obs["condition"] = adata.obs["condition"].astype(str)
    adata.obs.iloc[-5:, adata.obs.columns.get_loc("condition")] = "NOTAGENE1"
    with pytest.raises(ValueError, match=r"not in the 19,264-gene vocabulary.*NOTAGENE1"):
        XTrimoGenePerturbation.setup_anndata(adata)
    ctrl = sim[(sim.obs["condition"] == "ctrl").to_numpy()][:5].copy()
    with pytest.raises(ValueError, match=r"'KLF1\+NOTAGENE1' names gene\(s\) \['NOTAGENE1'\]"):
        trained.predict(ctrl, ["KLF1+NOTAGENE1"])
    with pytest.raises(TypeError, match="list of condition names"):
        trained.predict(ctrl, "KLF1")
    with pytest.raises(ValueError, match="needs a model set up with cell_type_key"):
        trained.predict(ctrl, ["KLF1"], cell_types=["T1"])


def test_auto_condition_type_says_when_few_genes_could_be_treatments(exact_perturbation_data):
    adata = exact_perturbation_data(conditions=["ctrl", "A"])
    with pytest.warns(UserWarning, match="condition_type='treatment'"):
        XTrimoGenePerturbation.setup_anndata(adata)
    assert adata.uns["xtg_perturbation"]["condition_type"] == "genetic"
    XTrimoGenePerturbation.setup_anndata(adata, condition_type="treatment")
    assert adata.uns["xtg_perturbation"]["condition_type"] == "treatment"


def test_cell_type_without_control_cells(exact_perturbation_data):
    build = exact_perturbation_data
    adata = build(cell_types=True)
    no_t2_control = ~((adata.obs["cell_type"] == "T2") & (adata.obs["condition"] == "ctrl"))
    with pytest.raises(ValueError, match=r"\['T2'\] .* have perturbed cells but no control cells"):
        XTrimoGenePerturbation.setup_anndata(
            adata[no_t2_control.to_numpy()].copy(), cell_type_key="cell_type"
        )
    XTrimoGenePerturbation.setup_anndata(adata, cell_type_key="cell_type")
    baseline = PerturbationBaseline(adata, method="mean_shift")
    baseline.train()
    only_t1 = adata[(adata.obs["cell_type"] == "T1").to_numpy()].copy()
    with pytest.raises(
        ValueError, match=r"cell type\(s\) \['T2'\] have no control cells in adata_ctrl"
    ):
        baseline.predict(only_t1, [build.names["A"]], cell_types=["T2"])
    stimulated = adata[(adata.obs["condition"] != "ctrl").to_numpy()].copy()
    with pytest.raises(ValueError, match="adata_ctrl has no control cells"):
        baseline.predict(stimulated, [build.names["A"]])


def test_data_of_another_gene_set(trained, sim):
    ctrl = sim[(sim.obs["condition"] == "ctrl").to_numpy()][:5].copy()
    with pytest.raises(ValueError, match="measures a different gene set"):
        trained.predict(ctrl[:, :-10].copy(), trained.training_conditions[:1])


def test_not_set_up_and_wrong_backbone(exact_perturbation_data):
    adata = exact_perturbation_data()
    with pytest.raises(ValueError, match="setup_anndata"):
        PerturbationBaseline(adata, method="additive")
    XTrimoGenePerturbation.setup_anndata(adata)
    with pytest.raises(TypeError, match="backbone must be a trained XTrimoGene model or the path"):
        XTrimoGenePerturbation(adata, backbone=object())
    model = XTrimoGenePerturbation(adata, backbone=_backbone(), hidden_dim=8)
    with pytest.raises(RuntimeError, match="not trained"):
        model.predict(adata, ["KLF1"])


def test_gene_outside_the_backbone_panel_is_predicted_with_a_warning(sim):
    positions = xtg.GeneVocab.default().positions(list(sim.var_names))
    perturbed = sorted(
        {c for c in sim.obs["condition"].astype(str) if c != "ctrl" and "+" not in c}
    )
    outside = perturbed[0]
    panel = tuple(sorted(p for g, p in zip(sim.var_names, positions, strict=True) if g != outside))
    torch.manual_seed(0)
    backbone = xtg.XTrimoGene(None, preset="tiny", decoder_mode="masked", input_positions=panel)
    model = XTrimoGenePerturbation(sim, backbone=backbone, hidden_dim=16)
    model.train(max_steps=5, batch_size=16)
    ctrl = sim[(sim.obs["condition"] == "ctrl").to_numpy()][:20].copy()
    with pytest.warns(UserWarning, match="outside the backbone's gene panel"):
        pred = model.predict(ctrl, [outside], aggregate="mean")
    assert np.isfinite(pred.X).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.predict(ctrl, [perturbed[1]], aggregate="mean")  # a panel gene: no warning


@pytest.mark.parametrize("pooling", ["max_all_tokens", "depth_tokens", "mean"])
def test_every_backbone_pooling_gives_a_cell_state(sim, pooling):
    model = XTrimoGenePerturbation(sim, backbone=_backbone(), hidden_dim=16, pooling=pooling)
    model.train(max_steps=3, batch_size=8)
    ctrl = sim[(sim.obs["condition"] == "ctrl").to_numpy()][:20].copy()
    pred = model.predict(ctrl, conditions=[model.training_conditions[0]], aggregate="mean")
    assert np.isfinite(pred.X).all()
