from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny pretraining models: intra-op threads only add overhead (and oversubscribe CI)."""
