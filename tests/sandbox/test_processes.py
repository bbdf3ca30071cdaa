"""The parent's side of the worker processes (:mod:`autotts.sandbox.processes`): whatever
happens while they start, none outlives :func:`drive`."""

import os

import pytest

from autotts.errors import RunFailure
from autotts.sandbox.limits import SandboxLimits
from autotts.sandbox.processes import WorkerProcess, drive


def test_a_worker_that_cannot_start_leaves_none_running(tmp_path):
    """The second worker's start fails for real (its working directory is gone): the error
    says what to free, and the first worker, already started, is killed on the way out."""
    limits = SandboxLimits()
    started, failing = WorkerProcess(limits), WorkerProcess(limits)
    started.start(str(tmp_path))
    gone = tmp_path / "gone"
    with pytest.raises(RunFailure, match="could not start a sandbox worker.*fewer workers"):
        drive([started, failing], [({}, None), ({}, None)], limits, str(gone))
    assert started.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(started.process.pid, 0)
    assert failing.process is None
