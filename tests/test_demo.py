"""The README's first command: ``xtrimogene-sc demo`` (bounded to 1 epoch here)."""

from __future__ import annotations

import json
import logging

import anndata as ad
import pytest

from xtrimogene_sc import XTrimoGene
from xtrimogene_sc.cli import main


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.slow
def test_demo_writes_h5ad_umap_model_and_metrics(tmp_path, slow_full, capsys):
    out = tmp_path / "demo"
    lightning = _Records()
    logging.getLogger("lightning.pytorch").addHandler(lightning)
    try:
        assert main(["demo", "--out", str(out), "--epochs", "10" if slow_full else "1"]) == 0
    finally:
        logging.getLogger("lightning.pytorch").removeHandler(lightning)
    # the first thing a user runs prints its scores, not Lightning's start-up notices
    assert not [m for m in lightning.messages if "litlogger" in m or "GPU available" in m]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["masked_mse_after"] < metrics["masked_mse_before"]
    assert 0.0 <= metrics["label_transfer_accuracy_on_held_out_half"] <= 1.0
    adata = ad.read_h5ad(out / "pbmc_xtg.h5ad")
    assert adata.obsm["X_xtg"].shape[0] == 700
    assert {"xtg_leiden", "xtg_label", "xtg_label_confidence"} <= set(adata.obs)
    assert "X_umap" in adata.obsm
    colors = {
        key: dict(zip(adata.obs[key].cat.categories, adata.uns[f"{key}_colors"], strict=True))
        for key in ("bulk_labels", "xtg_label")
    }
    truth, called = colors["bulk_labels"], colors["xtg_label"]
    assert all(truth[label] == color for label, color in called.items() if label in truth)
    assert (out / "umap.png").stat().st_size > 10_000
    assert (out / "model" / "model.safetensors").exists()
    # the saved model embeds with the recipe's pooling, as the demo did
    assert adata.uns["X_xtg"]["params"]["pooling"] == "mean"
    assert XTrimoGene.load(out / "model").default_pooling == "mean"
    assert "wrote" in capsys.readouterr().out


def test_the_demo_recipe_keeps_a_chosen_presets_architecture():
    from xtrimogene_sc._demo import demo_recipe
    from xtrimogene_sc.model import SMALL_DATA_RECIPE

    assert demo_recipe() == SMALL_DATA_RECIPE
    assert demo_recipe(epochs=3).epochs == 3
    small = demo_recipe(preset="small")
    assert (small.preset, small.encoder_depth) == ("small", None)  # 4 layers, not the recipe's 1
    assert small.config_overrides().keys().isdisjoint({"encoder_depth"})


def test_cli_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(cmd in text for cmd in ("demo", "pretrain", "preprocess"))
