"""Keep torch's thread count when calling libraries that reset OpenMP's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Restore torch's intra-op thread count after the enclosed code (usable as a decorator).

    numba's OpenMP threading layer, which scanpy's numba-parallel steps use (``normalize_total``
    among them), sets OpenMP's thread count to ``NUMBA_NUM_THREADS`` (every CPU) on
    its first parallel call, and torch reads its count from OpenMP. A process limited to one
    thread (``OMP_NUM_THREADS=1`` or :func:`torch.set_num_threads`) would then train on every
    core: two such runs side by side on two cores took five times as long. numba sets the count
    only once, so restoring it afterwards holds for the rest of the process.
    """
    import torch

    n_threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n_threads:
            torch.set_num_threads(n_threads)
