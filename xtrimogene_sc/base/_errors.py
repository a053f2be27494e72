"""The error every model's loader raises for a file it cannot trust."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint or saved model directory that cannot be read, does not fit, or was modified.

    Raised for released ``.ckpt`` files that are truncated, need pickle or have wrong shapes, and
    for model directories whose files are damaged or fail the checksums recorded at save time.
    The message names the file and the problem.
    """
