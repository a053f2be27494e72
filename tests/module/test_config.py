"""The architecture config and its separate pretraining objective: building, copying, saving."""

from __future__ import annotations

import json

import pytest
import torch

from xtrimogene_sc.module import PretrainingObjective, XTrimoGeneConfig, XTrimoGeneModule

OBJECTIVE_FIELDS = set(PretrainingObjective.__dataclass_fields__)


def test_the_architecture_holds_no_objective_field():
    architecture = set(XTrimoGeneConfig.__dataclass_fields__) - {"objective"}
    assert not architecture & OBJECTIVE_FIELDS
    assert {"mask_ratio_nonzero", "contrastive_weight", "cell_reconstruction_weight"} <= (
        OBJECTIVE_FIELDS
    )


def test_objective_fields_given_by_name_go_to_the_objective():
    config = XTrimoGeneConfig.preset("tiny", encoder_dim=32, mask_ratio_nonzero=0.5,
                                     cell_reconstruction_weight=2.0)  # fmt: skip
    assert config.encoder_dim == 32
    assert config.objective.mask_ratio_nonzero == 0.5
    assert config.objective.cell_reconstruction_weight == 2.0
    again = config.replace(contrastive_weight=1.0, encoder_depth=1)
    assert again.objective.contrastive_weight == 1.0
    assert again.objective.mask_ratio_nonzero == 0.5  # the rest of the objective is kept
    assert again.encoder_depth == 1
    assert config.objective.contrastive_weight == 0.0  # frozen: the original is unchanged


def test_unknown_fields_name_both_lists():
    with pytest.raises(ValueError, match=r"unknown XTrimoGeneConfig fields \['heads'\]; valid"):
        XTrimoGeneConfig.preset("tiny", heads=4)
    with pytest.raises(ValueError, match="mask_ratio_zero=1.5 must lie in"):
        XTrimoGeneConfig().replace(mask_ratio_zero=1.5)


def test_dicts_round_trip_and_the_flat_layout_of_older_saves_is_read():
    config = XTrimoGeneConfig.preset("tiny", contrastive_weight=0.5, input_positions=(1, 5, 9))
    nested = json.loads(json.dumps(config.to_dict()))
    assert set(nested["objective"]) == OBJECTIVE_FIELDS
    assert XTrimoGeneConfig.from_dict(nested) == config
    flat = {k: v for k, v in nested.items() if k != "objective"} | nested["objective"]
    assert XTrimoGeneConfig.from_dict(flat) == config


def test_a_directory_saved_with_the_flat_layout_still_loads(tmp_path):
    """Model directories written before the split keep loading (checksums over what they hold)."""
    import xtrimogene_sc as xtg
    from xtrimogene_sc.base._saved import save_checked
    from xtrimogene_sc.model._io import VOCAB_FILE

    torch.manual_seed(0)
    config = XTrimoGeneConfig.preset("tiny", decoder_mode="masked", cell_reconstruction_weight=1.0)
    module = XTrimoGeneModule(config)
    nested = config.to_dict()
    flat = {k: v for k, v in nested.items() if k != "objective"} | nested["objective"]
    save_checked(
        tmp_path / "old", kind="xtrimogene", meta={"config": flat, "is_trained": True},
        state_dict=module.state_dict(),
        extra_files={VOCAB_FILE: xtg.GeneVocab.default().to_tsv},
    )  # fmt: skip
    loaded = xtg.XTrimoGene.load(tmp_path / "old")
    assert loaded.config == config
    assert loaded.module.cell_query is not None  # the objective's head came back with it
    for name, tensor in module.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[name], tensor), name
