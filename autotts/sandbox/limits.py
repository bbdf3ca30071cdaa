"""A sandbox worker's limits, and how the parent holds a running worker to them without
trusting anything it says: CPU time per round and the idle allowance, measured from the
kernel's accounting of the process that runs the candidate."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass
class SandboxLimits:
    """Limits of one sandboxed evaluation. Results depend only on CPU time, never on the
    machine's load: ``cpu_s`` is the CPU seconds of a worker's whole life (kernel-enforced),
    ``step_cpu_s`` the CPU seconds it may spend between two rounds (every episode in flight
    taking one action: an endless loop in ``run()`` ends there). The wall-clock ones only end
    workers that stop computing: ``idle_s``, the total time a worker may spend neither
    computing, nor waiting for a CPU, nor waiting for the parent (sleeping or blocked: summed
    over its whole life, so that short sleeps add up), and the backstop ``wall_s`` (default
    ``10 × cpu_s + 60``)."""

    cpu_s: float = 300.0
    memory_mb: int = 2048
    step_cpu_s: float = 5.0
    idle_s: float = 30.0
    wall_s: float | None = None
    reply_mb: int = 1024  # per worker, over the whole reply

    @property
    def backstop_s(self) -> float:
        return self.wall_s if self.wall_s is not None else 10 * self.cpu_s + 60


class Rejected(Exception):
    """Ends a sandboxed evaluation with a reason (the candidate's fault)."""


def _runner_times(pid: int) -> float | None:
    """Seconds the runner ``pid`` has been running or waiting for a CPU (``schedstat``), or
    its CPU time where the kernel keeps no scheduler statistics; ``None`` once it is gone."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as handle:
            running, waiting = handle.read().split()[:2]
        return (int(running) + int(waiting)) / 1e9
    except (OSError, ValueError):
        return _cpu_seconds(pid)


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LimitWatch:
    """The parent's view of one worker's time: when it waits on the parent (the parent owes
    it a frame), and the runner's scheduled and CPU time (``/proc``), checked by
    :meth:`check` every fraction of a second."""

    def __init__(self, limits: SandboxLimits):
        self.limits = limits
        self.runner: int | None = None
        self.born = 0.0  # when the runner's pid arrived
        self.base = 0.0  # the runner's scheduled time then
        self.parent_s = 0.0  # time the worker waited on the parent
        self.owed_since: float | None = None  # the parent owes it a frame since then
        self.rounds = 0
        self.round_mark: tuple[int, float] | None = None  # (rounds, CPU) at the last check

    def runner_started(self, pid: int) -> None:
        self.runner, self.born = pid, time.monotonic()
        self.base = _runner_times(pid) or 0.0

    def owe(self, round_done: bool = False) -> None:
        """The parent owes the worker a frame from now on (after a round, with
        ``round_done``)."""
        self.owed_since = time.monotonic()
        self.rounds += round_done

    def paid(self) -> None:
        """The parent's frame is out: the worker computes again."""
        if self.owed_since is not None:
            self.parent_s += time.monotonic() - self.owed_since
            self.owed_since = None

    def check(self, now: float) -> None:
        """Hold a running worker to its idle allowance and its CPU time per round."""
        if self.runner is None:
            return
        scheduled = _runner_times(self.runner)
        if scheduled is None:
            return
        waited = self.parent_s + (now - self.owed_since if self.owed_since is not None else 0)
        idle = (now - self.born) - (scheduled - self.base) - waited
        if idle > self.limits.idle_s:
            raise Rejected(
                f"the worker stopped computing for {self.limits.idle_s:g} s in all "
                "(sleeping or blocked)"
            )
        cpu = _cpu_seconds(self.runner)
        if self.owed_since is not None or cpu is None:
            self.round_mark = None
            return
        if self.round_mark is None or self.round_mark[0] != self.rounds:
            self.round_mark = (self.rounds, cpu)
        elif cpu - self.round_mark[1] > self.limits.step_cpu_s:
            raise Rejected(
                f"CPU-time limit exceeded: a round took more than {self.limits.step_cpu_s:g} s "
                "of CPU (a controller's run() loops forever, or computes too long, before its "
                "next action or answer)"
            )
