"""Training loop of the perturbation head: (control cell, condition) pairs -> group response.

Every training group (a perturbed condition in a cell type) has one target, its observed mean
response ``mean(perturbed) - mean(control)`` in that type. For genetic conditions the loss adds
a second pass in which seen genes borrow their contribution from the others through the gene
embeddings (see :class:`~xtrimogene_sc.perturbation.PerturbationHead`). A step draws groups uniformly and,
for each, one control cell of the group's type; the head predicts the shift of that cell under
the condition and is penalised by the squared error to the group's response. The cell state
lets the response depend on the cell (e.g. its type); regressing on group means instead of
randomly paired single cells keeps the target free of cell-to-cell noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from xtrimogene_sc.base._interrupt import GracefulStop
from xtrimogene_sc.data._batch import SparseCells
from xtrimogene_sc.perturbation._head import PerturbationModule


@dataclass
class TrainingPairs:
    """What the sampler draws from.

    ``members``/``member_mask`` are ``(n_groups, M)``, ``targets`` ``(n_groups, G)``,
    ``group_type`` the cell type index of each group, ``cells_of_type`` the control-cell indices
    (rows of ``states``) of each type.
    """

    members: torch.Tensor
    member_mask: torch.Tensor
    targets: torch.Tensor
    group_type: np.ndarray
    cells_of_type: list[np.ndarray]

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Group and control-cell index of ``batch_size`` random pairs."""
        groups = rng.integers(len(self.group_type), size=batch_size)
        cells = np.array(
            [rng.choice(self.cells_of_type[self.group_type[g]]) for g in groups], dtype=np.int64
        )
        return groups, cells


def fit_head(
    module: PerturbationModule,
    pairs: TrainingPairs,
    state_of: Callable[[np.ndarray], torch.Tensor],
    *,
    max_steps: int,
    batch_size: int,
    lr: float,
    backbone_lr: float,
    weight_decay: float,
    seed: int,
    progress: bool,
    stop: GracefulStop | None = None,
) -> pd.DataFrame:
    """Train with AdamW (linear warm-up over 5% of the steps, cosine decay); returns the history.

    ``state_of(cell indices)`` gives standardised cell states ``(B, D)``: looked up in a table
    for a frozen backbone, recomputed through the trainable encoder layers otherwise. ``stop``
    counts the steps and ends training after the step in which Ctrl-C was pressed.
    """
    stop = stop or GracefulStop()
    device = pairs.targets.device
    head = [p for p in module.head.parameters() if p.requires_grad]
    backbone = [p for p in module.backbone.parameters() if p.requires_grad]
    groups = [{"params": head, "lr": lr}] + (
        [{"params": backbone, "lr": backbone_lr}] if backbone else []
    )
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    warmup = max(1, int(0.05 * max_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / warmup)
        * 0.5 * (1 + math.cos(math.pi * min(step, max_steps) / max_steps)),
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    module.train()
    history, running = [], []
    every = max(1, max_steps // 50)
    for step in tqdm(range(max_steps), desc="perturbation head", disable=not progress):
        group, cell = pairs.sample(batch_size, rng)
        g = torch.as_tensor(group, device=device)
        state, members, mask, target = (
            state_of(cell),
            pairs.members[g],
            pairs.member_mask[g],
            pairs.targets[g],
        )
        loss = nn.functional.mse_loss(module.head(state, members, mask), target)
        borrow = module.head.draw_borrowing(mask)
        if borrow is not None:  # genes seen in training stand in for unseen ones
            loss = loss + nn.functional.mse_loss(module.head(state, members, mask, borrow), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(head + backbone, 1.0)
        optimizer.step()
        scheduler.step()
        running.append(float(loss.detach()))
        stop.steps += 1
        if (step + 1) % every == 0 or step + 1 == max_steps or stop.requested:
            history.append({"step": step + 1, "train_loss": float(np.mean(running))})
            running = []
        if stop.requested:
            break
    module.eval()
    return pd.DataFrame(history)


def frozen_states(states: torch.Tensor) -> Callable[[np.ndarray], torch.Tensor]:
    """Look-up of precomputed standardised states."""
    return lambda cells: states[torch.as_tensor(cells, device=states.device)]


def live_states(
    module: PerturbationModule, tokenize: Callable[[np.ndarray], SparseCells]
) -> Callable[[np.ndarray], torch.Tensor]:
    """States recomputed by the (partly trainable) backbone for each batch."""
    device = next(module.parameters()).device

    def state_of(cells: np.ndarray) -> torch.Tensor:
        order = np.argsort(cells, kind="stable")
        batch = tokenize(cells[order]).to(device)
        raw = module.raw_state(batch)
        inverse = torch.as_tensor(np.argsort(order), device=device)
        return module.standardise(raw[inverse])

    return state_of
