"""Drug-combination synergy prediction with cell-line features from xTrimoGene or expression.

The model (:class:`DrugCombinationModel`), the gradient-boosting baseline, the O'Neil 2016 loader,
leakage-checked cross-validation splits and the metrics of the benchmark.
"""

from __future__ import annotations

from xtrimogene_sc.drugcomb._baselines import GradientBoostingSynergy
from xtrimogene_sc.drugcomb._data import (
    COLUMNS,
    OneilData,
    load_oneil,
    read_cell_line_expression,
    read_cell_line_zscores,
    synergy_labels,
)
from xtrimogene_sc.drugcomb._evaluate import cross_validate, synergy_metrics
from xtrimogene_sc.drugcomb._featurize import morgan_fingerprints
from xtrimogene_sc.drugcomb._model import DrugCombinationModel
from xtrimogene_sc.drugcomb._module import SynergyConfig, SynergyModule
from xtrimogene_sc.drugcomb._splits import (
    LeakageError,
    check_split,
    folds_from_column,
    leave_cell_line_out,
    leave_drug_out,
    leave_drug_pair_out,
    make_folds,
    random_folds,
)

__all__ = [
    "COLUMNS",
    "DrugCombinationModel",
    "GradientBoostingSynergy",
    "LeakageError",
    "OneilData",
    "SynergyConfig",
    "SynergyModule",
    "check_split",
    "cross_validate",
    "folds_from_column",
    "leave_cell_line_out",
    "leave_drug_out",
    "leave_drug_pair_out",
    "load_oneil",
    "make_folds",
    "morgan_fingerprints",
    "random_folds",
    "read_cell_line_expression",
    "read_cell_line_zscores",
    "synergy_labels",
    "synergy_metrics",
]
