"""Checks of user arguments, run before anything changes, with one message shape.

Every model's ``train`` (and the constructors that take counts or rates) call these, so a bad
value is refused with its name, the value given and what is allowed, instead of failing later
inside torch or training on a NaN loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any


def require_positive_int(name: str, value: Any, note: str = "") -> None:
    """Refuse ``value`` unless it is an integer >= 1 (``bool`` is not one)."""
    if not _is_int(value) or value < 1:
        fail(name, value, f"a positive integer{note}")


def require_int_in(name: str, value: Any, low: int, high: int | None, note: str = "") -> None:
    """Refuse ``value`` unless it is an integer in ``[low, high]`` (``high=None``: no bound)."""
    if not _is_int(value) or value < low or (high is not None and value > high):
        allowed = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        fail(name, value, f"{allowed}{' ' + note if note else ''}")


def require_real(name: str, value: Any, ok: Callable[[float], bool], allowed: str) -> None:
    """Refuse ``value`` unless it is a finite real number for which ``ok(value)`` holds."""
    if (
        not isinstance(value, Real)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not ok(value)
    ):
        fail(name, value, allowed)


def require_learning_rates(lr: Any, weight_decay: Any, backbone_lr: Any = None) -> None:
    """The optimiser settings every task model takes: rates > 0, weight decay >= 0, all finite."""
    require_real("lr", lr, lambda v: v > 0, "a finite number > 0")
    if backbone_lr is not None:
        require_real("backbone_lr", backbone_lr, lambda v: v > 0, "None or a finite number > 0")
    require_real("weight_decay", weight_decay, lambda v: v >= 0, "a finite number >= 0")


def require_fit_args(
    *, lr: Any, weight_decay: Any, backbone_lr: Any = None, seed: Any = 0, **counts: Any
) -> None:
    """What every task model's ``train`` takes: counts >= 1, finite rates, an integer seed.

    ``counts`` are the step or epoch budgets, batch sizes and patiences, each an integer >= 1.
    """
    for name, value in counts.items():
        require_positive_int(name, value)
    require_learning_rates(lr, weight_decay, backbone_lr)
    require_int_in("seed", seed, 0, None)


def require_bool(name: str, value: Any) -> None:
    """Refuse anything but ``True`` or ``False`` (``1``, ``"yes"`` and ``None`` included)."""
    if not isinstance(value, bool):
        fail(name, value, "True or False")


def fail(name: str, value: Any, allowed: str) -> None:
    """Raise the package's ``ValueError`` for a bad argument."""
    msg = f"{name} must be {allowed}, got {value!r}"
    raise ValueError(msg)


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)
