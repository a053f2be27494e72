"""The fine-tuning loop of the cell-type classifier.

Class-weighted cross-entropy, early stopping on validation macro-F1, and the best epoch's
weights restored at the end (spec §8.2.6).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from xtrimogene_sc.annotation._head import ClassifierModule
from xtrimogene_sc.base._interrupt import GracefulStop
from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.data._loading import (
    CellBatchDataset,
    LengthBucketBatchSampler,
    identity_collate,
    row_lengths,
)


def class_weights(y: np.ndarray, n_classes: int, cap: float = 50.0) -> torch.Tensor:
    """Spec §8.2.6 weights ``min(max_k A_k / A_i, cap)``, normalised to sum to one.

    The reference prints ``max(..., 50)``, which would give every class at least weight 50; we
    read it as the intended cap. Classes absent from ``y`` get weight 0.
    """
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = np.minimum(counts.max() / counts[present], cap)
    return torch.tensor(weights / weights.sum(), dtype=torch.float32)


class _LabelledCells(CellBatchDataset):
    """Minibatches of cells with their integer labels."""

    def __init__(self, X: Any, var_to_position: np.ndarray, y_of_row: np.ndarray) -> None:
        super().__init__(X, var_to_position)
        self.y_of_row = y_of_row

    def __getitem__(self, indices: list[int]) -> tuple[SparseCells, torch.Tensor]:
        return super().__getitem__(indices), torch.from_numpy(self.y_of_row[np.asarray(indices)])


def _loader(data: _LabelledCells, rows: np.ndarray, lengths: np.ndarray, **kwargs: Any) -> Any:
    sampler = LengthBucketBatchSampler(lengths[rows], rows, **kwargs)
    return sampler, DataLoader(data, sampler=sampler, batch_size=None, collate_fn=identity_collate)


def fit_classifier(
    module: ClassifierModule,
    X: Any,
    var_to_position: np.ndarray,
    *,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    max_epochs: int,
    batch_size: int,
    lr: tuple[float, float],
    weight_decay: float,
    patience: int,
    seed: int,
    stop: GracefulStop | None = None,
    progress: bool = False,
) -> tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray]]:
    """Train with early stopping on validation macro-F1.

    ``train`` and ``validation`` are (row indices into ``X``, integer labels); ``lr`` holds the
    learning rates of the head and of the fine-tuned encoder layers. The trainable weights of the
    best epoch are restored at the end. ``stop`` counts the steps and ends training after the
    step in which Ctrl-C was pressed. Returns the per-epoch history and the validation
    (logits, labels) of the best epoch.
    """
    stop = stop or GracefulStop()
    y_of_row = np.full(X.shape[0], -1, dtype=np.int64)
    for rows, y in (train, validation):
        y_of_row[rows] = y
    data = _LabelledCells(X, var_to_position, y_of_row)
    lengths = row_lengths(X)
    sampler, train_loader = _loader(data, train[0], lengths, batch_size=batch_size, seed=seed)
    _, val_loader = _loader(data, validation[0], lengths, batch_size=batch_size, shuffle=False)
    device = next(module.parameters()).device
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(train[1], module.n_classes).to(device))
    head = list(module.head.parameters())
    backbone = [p for p in module.backbone.parameters() if p.requires_grad]
    groups = [{"params": head, "lr": lr[0]}, {"params": backbone, "lr": lr[1]}]
    optimizer = torch.optim.AdamW(groups[: 2 if backbone else 1], weight_decay=weight_decay)
    history: dict[str, list[float]] = {k: [] for k in _HISTORY_KEYS}
    best_score, best_state, waited = (-1.0, -np.inf), None, 0
    best_val = (np.empty((0, module.n_classes)), np.empty(0, dtype=np.int64))
    for epoch in tqdm(range(max_epochs), desc="fine-tuning epochs", disable=not progress):
        sampler.set_epoch(epoch)
        history["train_loss"].append(_train_epoch(module, train_loader, loss_fn, optimizer, stop))
        # an epoch cut by Ctrl-C is validated only when no complete epoch was (to calibrate)
        if len(validation[0]) == 0 or stop.requested and best_state is not None:
            for key in _HISTORY_KEYS[1:]:
                history[key].append(float("nan"))
            if stop.requested:
                break
            continue
        logits, y_val = _evaluate(module, val_loader)
        metrics = _metrics(logits, y_val)
        for key, value in metrics.items():
            history[key].append(value)
        score = (metrics["validation_macro_f1"], -metrics["validation_loss"])
        if score > best_score:
            best_score, best_state, best_val, waited = (
                score,
                _tuned_state(module),
                (logits, y_val),
                0,
            )
        else:
            waited += 1
            if waited >= patience:
                break
        if stop.requested:
            break
    if best_state is not None:
        module.load_state_dict(best_state, strict=False)
    module.eval()
    return pd.DataFrame(history).rename_axis("epoch"), best_val


def _train_epoch(
    module: ClassifierModule,
    loader: Any,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    stop: GracefulStop,
) -> float:
    module.train()
    device = next(module.parameters()).device
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total, seen = 0.0, 0
    for cells, y in loader:
        loss = loss_fn(module(cells.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        total, seen = total + float(loss) * len(y), seen + len(y)
        stop.steps += 1
        if stop.requested:
            break
    return total / max(seen, 1)


@torch.inference_mode()
def _evaluate(module: ClassifierModule, loader: Any) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of every cell of ``loader`` (in the loader's order)."""
    module.eval()
    device = next(module.parameters()).device
    logits, labels = [], []
    for cells, y in loader:
        logits.append(module(cells.to(device)).float().cpu().numpy())
        labels.append(y.numpy())
    return np.concatenate(logits), np.concatenate(labels)


def _metrics(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    loss = nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y))
    pred = logits.argmax(axis=1)
    return {
        "validation_loss": float(loss),
        "validation_accuracy": float((pred == y).mean()),
        "validation_macro_f1": float(f1_score(y, pred, average="macro")),
    }


def _tuned_state(module: ClassifierModule) -> dict[str, torch.Tensor]:
    """Copy of the weights that training changes (trainable parameters and head buffers)."""
    tuned = {n for n, p in module.named_parameters() if p.requires_grad}
    return {
        k: v.detach().clone()
        for k, v in module.state_dict().items()
        if k in tuned or k.startswith("head.")
    }


_HISTORY_KEYS = ("train_loss", "validation_loss", "validation_accuracy", "validation_macro_f1")
