"""Every task model shares the base: device moves, from_xtrimogene, and Ctrl-C during training."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "reliability"))

from reliability_support import quiet, tiny_model
from test_task_models_table import SIM, _drug_tables

import xtrimogene_sc as xtg
from xtrimogene_sc.base._interrupt import GracefulStop
from xtrimogene_sc.base._task import TaskModel


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny models: a second intra-op thread only adds overhead."""


@pytest.fixture(scope="module")
def backbone() -> xtg.XTrimoGene:
    return tiny_model()


@pytest.fixture(scope="module")
def screen():
    adata = xtg.datasets.synthetic_perturbseq(**SIM, seed=3)
    quiet(xtg.XTrimoGenePerturbation.setup_anndata, adata)
    return adata


def _interrupt_at_step(module: torch.nn.Module, step: int) -> None:
    """Send the process a SIGINT (a Ctrl-C) during the ``step``-th training forward pass."""
    calls = {"n": 0}

    def hook(mod: torch.nn.Module, args: object) -> None:
        if mod.training and torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == step:
                signal.raise_signal(signal.SIGINT)

    module.register_forward_pre_hook(hook)


def _assert_handler_restored(before: object) -> None:
    assert signal.getsignal(signal.SIGINT) is before


def test_every_task_model_is_a_task_model():
    for cls in (xtg.XTrimoGeneClassifier, xtg.XTrimoGenePerturbation, xtg.DrugCombinationModel):
        assert issubclass(cls, TaskModel)
        assert cls.kind.startswith("xtrimogene_")


def test_from_xtrimogene_builds_the_same_model(backbone, screen):
    direct = xtg.XTrimoGeneClassifier(backbone, hidden_dim=8)
    built = xtg.XTrimoGeneClassifier.from_xtrimogene(backbone, hidden_dim=8)
    assert repr(built) == repr(direct)
    assert built.device == torch.device("cpu")
    perturbation = xtg.XTrimoGenePerturbation.from_xtrimogene(backbone, screen, hidden_dim=8)
    assert perturbation.hparams["hidden_dim"] == 8
    with pytest.raises(TypeError, match="backbone must be a trained XTrimoGene model"):
        xtg.XTrimoGenePerturbation.from_xtrimogene(object(), screen)


def test_drug_model_moves_like_the_others():
    drugs, lines, table = _drug_tables()
    model = xtg.DrugCombinationModel(drugs, lines, cell_key="X_feat", hidden_dim=8)
    model.to_device("cpu")
    assert model.device == torch.device("cpu")


def test_ctrl_c_stops_the_drug_model_after_the_step_and_keeps_it_usable():
    drugs, lines, table = _drug_tables()
    model = xtg.DrugCombinationModel(drugs, lines, cell_key="X_feat", hidden_dim=8)
    _interrupt_at_step(model.module, 3)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="stopped by Ctrl-C after 3 optimiser steps"):
        model.train(table, max_epochs=50, batch_size=4, validation_size=0)
    _assert_handler_restored(before)
    assert model.is_trained
    assert len(model.history) == 1  # the interrupted epoch only
    assert np.isfinite(model.predict(table)).all()


def test_ctrl_c_stops_the_perturbation_model(backbone, screen):
    model = xtg.XTrimoGenePerturbation(screen, backbone=backbone, hidden_dim=8)
    _interrupt_at_step(model.module.head, 3)  # two head passes a step: during the second step
    with pytest.raises(KeyboardInterrupt, match="after 2 optimiser steps"):
        model.train(max_steps=200, batch_size=4)
    assert model.history["step"].iloc[-1] == 2
    ctrl = screen[(screen.obs["condition"] == "ctrl").to_numpy()].copy()
    pred = model.predict(ctrl, conditions=[model.training_conditions[0]], aggregate="mean")
    assert np.isfinite(pred.X).all()


def test_ctrl_c_stops_the_classifier_and_keeps_a_calibrated_model(backbone, screen):
    classifier = xtg.XTrimoGeneClassifier(backbone, hidden_dim=8, n_trainable_layers=0)
    original = classifier._build

    def build_and_interrupt(classes: np.ndarray) -> object:
        module = original(classes)
        _interrupt_at_step(module.head, 2)
        return module

    classifier._build = build_and_interrupt
    with pytest.raises(KeyboardInterrupt, match="after 2 optimiser steps"):
        quiet(classifier.train, screen, labels_key="condition", max_epochs=30, batch_size=8)
    assert len(classifier.history) == 1
    labels = quiet(classifier.predict, screen[:10])
    assert set(labels) <= set(classifier.classes_)


def test_second_ctrl_c_aborts_at_once():
    before = signal.getsignal(signal.SIGINT)
    stop = GracefulStop()
    with stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    _assert_handler_restored(before)


def test_every_task_model_trains_with_the_same_controls():
    """Seed, progress bar and the optimiser's settings are spelled alike on every task model."""
    import inspect

    for cls in (xtg.XTrimoGeneClassifier, xtg.XTrimoGenePerturbation, xtg.DrugCombinationModel):
        params = inspect.signature(cls.train).parameters
        assert {"seed", "progress", "lr", "weight_decay", "batch_size"} <= set(params), cls
        assert params["seed"].default == 0
        assert params["progress"].default is False
        assert callable(cls.load)
        assert callable(cls.save)
