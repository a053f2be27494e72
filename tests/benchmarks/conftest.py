"""Shared plumbing for the benchmark tests: load a script as a module, run it with ``--quick``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_script(name: str, path: Path) -> ModuleType:
    if name not in sys.modules:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))  # scripts import benchmarks._baseline
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[name]


def _run_quick(script: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="session")
def load_script() -> Callable[[str, Path], ModuleType]:
    """Import a benchmark script by path (once per session)."""
    return _load_script


@pytest.fixture(scope="session")
def run_quick() -> Callable[..., str]:
    """Run a benchmark script with ``--quick`` in a subprocess and return its stdout."""
    return _run_quick
