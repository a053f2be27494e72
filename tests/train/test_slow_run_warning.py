"""A long CPU run with the full decoder warns once, naming the faster setting."""

from __future__ import annotations

import warnings

import pytest

from xtrimogene_sc.train import _guard


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(_guard, "_warned_slow_runs", set())


def test_a_long_full_decoder_cpu_run_warns_once_naming_the_masked_decoder():
    with pytest.warns(UserWarning, match="decoder_mode='masked'"):
        _guard.warn_slow_cpu_run("full", "cpu", 630 * 10)  # the Quick start of before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _guard.warn_slow_cpu_run("full", "cpu", 630 * 10)  # once a process


@pytest.mark.parametrize(
    ("mode", "device", "cells"),
    [("masked", "cpu", 10**6), ("full", "cuda", 10**6), ("full", "cpu", 100)],
)
def test_no_warning_for_the_masked_decoder_a_gpu_or_a_short_run(mode, device, cells):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _guard.warn_slow_cpu_run(mode, device, cells)
