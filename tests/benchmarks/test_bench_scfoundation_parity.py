"""The parity benchmark runs and reports every reference output within its tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_scfoundation_parity.py"
FIXTURE = ROOT / ".." / "shared" / "data" / "scfoundation_parity" / "tiny_models.ckpt"


@pytest.mark.skipif(not FIXTURE.exists(), reason="scFoundation parity fixture not found")
def test_parity_table_within_tolerance(run_quick):
    rows = [line.split() for line in run_quick(SCRIPT).splitlines() if "e-0" in line]
    assert len(rows) == 6
    for row in rows:
        batch1, batch8, tolerance = map(float, row[-3:])
        assert max(batch1, batch8) <= tolerance, row
