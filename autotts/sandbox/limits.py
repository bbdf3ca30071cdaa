"""A sandbox worker's limits, and how the parent holds a running worker to them without
trusting anything it says: CPU time per round and the idle allowance, measured from the
kernel's accounting of the process that runs the candidate."""

from __future__ import annotations

import os
import platform
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


# one live episode's worker: CPU for its own code only; the engine's time never counts (not
# even towards the wall-time backstop)
EPISODE_LIMITS = SandboxLimits(cpu_s=120.0, memory_mb=2048)


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
        state = _state(pid)
        return state[1] if state is not None else None


# the calls an honest runner blocks in: reading the parent's pipe (fd 0), writing its own (1)
WAITING_ON_THE_PARENT = {
    "x86_64": {"0 0x0": "read", "19 0x0": "read", "1 0x1": "write", "20 0x1": "write"},
    "aarch64": {"63 0x0": "read", "65 0x0": "read", "64 0x1": "write", "66 0x1": "write"},
}.get(platform.machine(), {})  # (readv, writev)


def _state(pid: int) -> tuple[str, float] | None:
    """The runner's scheduler state letter and CPU seconds (``/proc/<pid>/stat``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return fields[0].decode(), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _blocked_on_the_channel(pid: int) -> str | None:
    """``"read"`` when the runner is blocked reading the parent's pipe, ``"write"`` when
    writing its own, else ``None`` (``/proc/<pid>/syscall``: the call's number and first
    argument)."""
    try:
        with open(f"/proc/{pid}/syscall", "rb") as handle:
            fields = handle.read().split()[:2]
    except OSError:
        return None
    return WAITING_ON_THE_PARENT.get(b" ".join(fields).decode("ascii", "replace"))


class LimitWatch:
    """The parent's view of one worker's time, sampled by :meth:`check` every fraction of a
    second from the kernel's accounting of the runner (``/proc``). The time it spends neither
    running nor waiting for a CPU (``schedstat``) is summed over its life and split by what
    the samples of it found: blocked on a pipe while the parent owes it something
    (``owes("read")``: reading, while an answer of the parent's is not written out or a
    frame of the worker's is unread; ``owes("write")``: writing, while the parent has not
    read what is in the pipe) is the parent's; anything else (sleeping, blocked elsewhere)
    is idle, held to ``idle_s`` in all. A round (the time between two frames from the
    worker) may use at most ``step_cpu_s`` of CPU."""

    def __init__(self, limits: SandboxLimits, owes):
        self.limits, self.owes = limits, owes
        self.runner: int | None = None
        self.last: tuple[float, float] | None = None  # (wall, scheduled) at the last check
        self.gaps = 0.0  # time neither running nor runnable, in all
        self.samples = {"idle": 0, "parent": 0}  # what the samples found it blocked on
        self.rounds = 0
        self.round_mark: tuple[int, float] | None = None  # (rounds, CPU) at the last check
        self.parent_seconds = 0.0  # spent serving slow rounds (not the worker's time)
        self.busy_since: float | None = None

    @property
    def idle(self) -> float:
        seen = self.samples["idle"] + self.samples["parent"]
        return self.gaps * self.samples["idle"] / seen if seen else 0.0

    def runner_started(self, pid: int) -> None:
        self.runner = pid
        scheduled = _runner_times(pid)
        self.last = (time.monotonic(), scheduled) if scheduled is not None else None

    def round_received(self) -> None:
        self.rounds += 1

    def parent_busy(self) -> None:
        """The parent starts serving a round that takes long (a live engine generating): the
        time until :meth:`parent_done` is not the worker's (``parent_seconds``, in all)."""
        now = time.monotonic()
        self.check(now, sample=False)  # (it waits on the frame it just sent)
        self.busy_since = now

    def parent_done(self) -> None:
        """The round is served: the worker's time counts again from here."""
        now = time.monotonic()
        if self.busy_since is not None:
            self.parent_seconds += now - self.busy_since
            self.busy_since = None
        if self.runner is not None and self.last is not None:
            scheduled = _runner_times(self.runner)
            if scheduled is not None:
                self.last = (now, scheduled)

    def check(self, now: float, sample: bool = True) -> None:
        """Hold a running worker to its idle allowance and its CPU time per round
        (``sample``: also sample what it is blocked on)."""
        if self.runner is None or self.last is None:
            return
        scheduled, state = _runner_times(self.runner), _state(self.runner)
        if scheduled is None or state is None:
            return
        self.gaps += max(0.0, (now - self.last[0]) - (scheduled - self.last[1]))
        self.last = (now, scheduled)
        if sample and state[0] != "R":
            blocked = _blocked_on_the_channel(self.runner)
            waiting = blocked is not None and self.owes(blocked)
            self.samples["parent" if waiting else "idle"] += 1
        if self.idle > self.limits.idle_s:
            raise Rejected(
                f"the worker stopped computing for {self.limits.idle_s:g} s in all "
                "(sleeping or blocked)"
            )
        cpu = state[1]
        if self.round_mark is None or self.round_mark[0] != self.rounds:
            self.round_mark = (self.rounds, cpu)
        elif cpu - self.round_mark[1] > self.limits.step_cpu_s:
            raise Rejected(
                f"CPU-time limit exceeded: a round took more than {self.limits.step_cpu_s:g} s "
                "of CPU (a controller's run() loops forever, or computes too long, before its "
                "next action or answer)"
            )
