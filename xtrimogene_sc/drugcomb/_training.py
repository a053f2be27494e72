"""Minibatch training with early stopping for :class:`~xtrimogene_sc.drugcomb.SynergyModule`."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from xtrimogene_sc.base._interrupt import GracefulStop


@dataclass
class IndexedRows:
    """Combinations as index tensors into the module's tables, with their targets."""

    drug_a: torch.Tensor
    drug_b: torch.Tensor
    cell: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return len(self.target)

    def take(self, rows: torch.Tensor) -> IndexedRows:
        """The rows at ``rows``."""
        return IndexedRows(
            self.drug_a[rows], self.drug_b[rows], self.cell[rows], self.target[rows]
        )

    def swapped(self) -> IndexedRows:
        """The same rows with the two drugs exchanged."""
        return IndexedRows(self.drug_b, self.drug_a, self.cell, self.target)

    def concat(self, other: IndexedRows) -> IndexedRows:
        """These rows followed by ``other``."""
        return IndexedRows(
            *(torch.cat([x, y]) for x, y in zip(self.fields(), other.fields(), strict=True))
        )

    def fields(self) -> tuple[torch.Tensor, ...]:
        """``(drug_a, drug_b, cell, target)``."""
        return self.drug_a, self.drug_b, self.cell, self.target

    def to(self, device: torch.device) -> IndexedRows:
        """The same rows on ``device`` (where the module's weights are)."""
        return IndexedRows(*(x.to(device) for x in self.fields()))


@torch.inference_mode()
def forward_all(
    module: nn.Module, rows: IndexedRows, *, batch_size: int = 8192, both_orders: bool = False
) -> torch.Tensor:
    """Module outputs for every row in evaluation mode; ``both_orders`` averages A+B and B+A."""
    module.eval()
    device = next(module.parameters()).device
    outputs = []
    for start in range(0, len(rows), batch_size):
        chunk = rows.take(torch.arange(start, min(start + batch_size, len(rows)))).to(device)
        out = module(chunk.drug_a, chunk.drug_b, chunk.cell)
        if both_orders:
            out = (out + module(chunk.drug_b, chunk.drug_a, chunk.cell)) / 2
        outputs.append(out)
    return torch.cat(outputs).cpu() if outputs else torch.empty(0)


def fit(
    module: nn.Module,
    train: IndexedRows,
    validation: IndexedRows | None,
    *,
    loss_fn: nn.Module,
    max_epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    patience: int,
    seed: int,
    both_orders: bool = False,
    progress: bool = False,
    stop: GracefulStop | None = None,
) -> pd.DataFrame:
    """AdamW over shuffled minibatches; keeps the weights of the best validation-loss epoch.

    ``both_orders`` trains on every row in both drug orders and validates on their average (for
    order-dependent networks). ``stop`` (see :class:`~xtrimogene_sc.base._task.TaskModel`) counts
    the steps and ends training after the step in which Ctrl-C was pressed. Returns the per-epoch
    ``train_loss`` and ``validation_loss``.
    """
    stop = stop or GracefulStop()
    generator = torch.Generator().manual_seed(seed)
    device = next(module.parameters()).device
    data = train.concat(train.swapped()) if both_orders else train
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    history: dict[str, list[float]] = {"train_loss": [], "validation_loss": []}
    best_loss, best_state, waited = np.inf, None, 0
    for _ in tqdm(range(max_epochs), desc="epochs", disable=not progress):
        module.train()
        total, seen = 0.0, 0
        for rows in torch.randperm(len(data), generator=generator).split(batch_size):
            batch = data.take(rows).to(device)
            loss = loss_fn(module(batch.drug_a, batch.drug_b, batch.cell), batch.target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
            seen += len(rows)
            stop.steps += 1
            if stop.requested:
                break
        history["train_loss"].append(total / max(seen, 1))
        if stop.requested:  # an interrupted epoch is not validated
            history["validation_loss"].append(float("nan"))
            break
        if validation is None or len(validation) == 0:
            history["validation_loss"].append(float("nan"))
            continue
        out = forward_all(module, validation, both_orders=both_orders)
        val_loss = float(loss_fn(out, validation.target.to(out.device)))
        history["validation_loss"].append(val_loss)
        if val_loss < best_loss:
            best_loss, best_state, waited = val_loss, copy.deepcopy(module.state_dict()), 0
        else:
            waited += 1
            if waited >= patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return pd.DataFrame(history).rename_axis("epoch")
