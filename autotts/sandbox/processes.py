"""The sandbox's worker processes, seen from the parent: how to start one (never with a
gold answer, a path or a store in its job), read its reply with bounded buffers, turn how it
ended into a reason, and kill every process it made. :func:`drive` runs a set of them to the
end; :mod:`.runner` decides what they run and what their replies mean.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pickle
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from ..errors import RunFailure
from .protocol import (
    EXIT_CPU,
    EXIT_IDLE,
    EXIT_ISOLATION,
    MAX_HEADER_BYTES,
    MAX_LINE_BYTES,
    MAX_TEXT_CHARS,
    ProtocolError,
    strict_json,
)


class IsolationUnavailable(RunFailure):
    """This machine cannot contain untrusted code; the message says what is missing and how
    to proceed."""


@dataclass
class SandboxLimits:
    """Limits of one sandboxed evaluation. Results depend only on CPU time, never on the
    machine's load: ``cpu_s`` and ``episode_cpu_s`` are CPU seconds (kernel-enforced per
    worker, and per episode by a CPU-time timer). The wall-clock ones only end workers that
    stop computing: ``idle_s`` (no CPU used for that long: sleeping or blocked) and the
    backstop ``wall_s`` (default ``10 × cpu_s + 60``)."""

    cpu_s: float = 300.0
    memory_mb: int = 2048
    episode_cpu_s: float = 5.0
    idle_s: float = 30.0
    wall_s: float | None = None
    reply_mb: int = 1024  # per worker, over the whole reply

    @property
    def backstop_s(self) -> float:
        return self.wall_s if self.wall_s is not None else 10 * self.cpu_s + 60


class Rejected(Exception):
    """Ends a sandboxed evaluation with a reason (the candidate's fault)."""


@functools.cache
def isolation_problems() -> tuple[str, ...]:
    """What keeps this machine from isolating a worker (empty when nothing does): a worker
    isolates itself for real and tries what it must not be able to do."""
    try:
        process = subprocess.run(
            [sys.executable, "-I", "-m", "autotts.sandbox.worker", "--probe"],
            capture_output=True,
            timeout=60,
            env=_worker_environment(),
            cwd=tempfile.gettempdir(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return (f"the isolation probe could not run: {exc}",)
    if process.returncode != 0:
        tail = process.stderr.decode(errors="replace").strip().splitlines()
        return (tail[-1] if tail else f"the isolation probe exited with {process.returncode}",)
    try:
        return tuple(json.loads(process.stdout)["problems"])
    except Exception:
        return ("the isolation probe gave no readable answer",)


def require_isolation() -> None:
    """Raise :class:`IsolationUnavailable` unless untrusted code can be contained here."""
    problems = isolation_problems()
    if problems:
        raise IsolationUnavailable(
            "untrusted controller code needs operating-system isolation, which this machine "
            f"does not provide: {'; '.join(problems)}. Run it on Linux ≥ 5.13 with user "
            "namespaces, Landlock and libseccomp (root, or unprivileged user namespaces "
            "allowed), or turn isolation off to run it without containment (only for code "
            "you trust)."
        )


def _worker_environment() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


class WorkerProcess:
    """One worker process and the units it owes, read line by line."""

    def __init__(self, units: list[int], handle, limits: SandboxLimits):
        self.units = units  # global unit indices, in the order the worker runs them
        self.handle = handle  # (worker, position, payload) → None; raises Rejected
        self.limits = limits
        self.process: subprocess.Popen | None = None
        self.pending = b""
        self.received = 0
        self.stderr = b""
        self.params = None
        self.next = 0

    def start(self, workdir: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-m", "autotts.sandbox.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=_worker_environment(),
            start_new_session=True,
        )

    def send(self, job: dict) -> None:
        """Hand the worker its job (it reads all of it before writing anything)."""
        try:
            self.process.stdin.write(pickle.dumps(job, protocol=5))
            self.process.stdin.close()
        except BrokenPipeError:
            pass

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limits.reply_mb << 20:
            raise Rejected(f"the reply exceeds {self.limits.reply_mb} MB")
        lines = (self.pending + chunk).split(b"\n")
        self.pending = lines.pop()
        if len(self.pending) > MAX_LINE_BYTES:
            raise Rejected(f"a reply line exceeds {MAX_LINE_BYTES >> 20} MB")
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        tag, tab, payload = line.partition(b"\t")
        if not tab:
            raise Rejected("malformed reply: a line without a tab")
        if self.params is None:
            if len(line) > MAX_HEADER_BYTES:
                raise Rejected("malformed reply: the header line is too long")
            try:
                message = strict_json(payload)
            except ProtocolError as exc:
                raise Rejected(f"malformed reply: the header line: {exc}") from None
            if tag == b"E":
                if type(message) is not str:
                    raise Rejected("malformed reply: the load error is not a string")
                raise Rejected(message[:MAX_TEXT_CHARS])
            if tag != b"P":
                raise Rejected("malformed reply: it does not start with the parameters")
            params = message
            if type(params) is not list or not all(type(p) is dict for p in params):
                raise Rejected("malformed reply: parameters must be a list of objects")
            self.params = params
            return
        if tag != b"%d" % self.next or self.next >= len(self.units):
            raise Rejected(
                f"malformed reply: expected unit {self.next} of {len(self.units)}, got "
                f"{tag[:20].decode('ascii', 'replace')!r}"
            )
        self.handle(self, self.next, payload)
        self.next += 1

    def finish(self) -> None:
        """After the worker exited: how it ended, and whether it owed anything."""
        code = self.process.returncode
        tail = self.stderr.decode("utf-8", "replace").strip().splitlines()
        last = tail[-1][:500] if tail else ""
        if code == EXIT_ISOLATION:
            raise IsolationUnavailable(f"a sandbox worker could not isolate itself: {last}")
        if code == EXIT_CPU:
            raise Rejected(f"CPU-time limit exceeded ({self.limits.cpu_s:g} s of CPU)")
        if code == EXIT_IDLE:
            raise Rejected(
                f"the worker stopped computing for {self.limits.idle_s:g} s (sleeping or blocked)"
            )
        if code > 128:
            try:
                name = signal.Signals(code - 128).name
            except ValueError:
                name = f"signal {code - 128}"
            raise Rejected(f"sandbox worker killed by {name}")
        if code != 0:
            if "MemoryError" in last:
                raise Rejected(f"memory limit exceeded ({self.limits.memory_mb} MB)")
            raise Rejected(f"sandbox worker failed: {last or f'exit code {code}'}")
        if self.pending:
            raise Rejected("malformed reply: the last line is incomplete")
        if self.params is None or self.next != len(self.units):
            raise Rejected(f"malformed reply: {self.next} of {len(self.units)} units were reported")

    def kill(self) -> None:
        """Kill every process of the worker's session (the supervisor and the runner, which
        is PID 1 of its own PID namespace), close its pipes, and wait until none is left."""
        if self.process is None:
            return
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError):
                stream.close()
        for _ in range(200):
            try:
                os.killpg(group, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.01)


def drive(
    workers: list[WorkerProcess],
    jobs: list[dict],
    limits: SandboxLimits,
    workdir: str,
    then=None,
) -> None:
    """Run the workers to the end (starting those not started yet), feeding their output to
    their handlers; every process is killed on the way out, whatever happened. ``then(worker)``
    is called as each worker ends well and may return more (worker, job) pairs to run."""
    deadline = time.monotonic() + limits.backstop_s
    selector = selectors.DefaultSelector()
    running: dict[WorkerProcess, int] = {}  # open output streams per worker
    everyone: list[WorkerProcess] = []

    def launch(pairs) -> None:
        pairs = list(pairs)
        for worker, _ in pairs:  # all start at once; each imports while the others do
            if worker.process is None:
                worker.start(workdir)
        for worker, job in pairs:
            everyone.append(worker)
            worker.send(job)
            for stream, kind in (
                (worker.process.stdout, "out"),
                (worker.process.stderr, "err"),
            ):
                os.set_blocking(stream.fileno(), False)
                selector.register(stream, selectors.EVENT_READ, (worker, kind))
            running[worker] = 2

    try:
        launch(zip(workers, jobs, strict=True))
        while running:
            if time.monotonic() > deadline:
                raise Rejected(f"wall-time backstop exceeded ({limits.backstop_s:g} s)")
            for key, _ in selector.select(timeout=0.5):
                worker, kind = key.data
                chunk = os.read(key.fd, 1 << 20)
                if chunk:
                    if kind == "err":
                        worker.stderr = (worker.stderr + chunk)[-4096:]
                    else:
                        worker.feed(chunk)
                    continue
                selector.unregister(key.fileobj)
                running[worker] -= 1
                if running[worker]:
                    continue
                del running[worker]
                try:
                    worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise Rejected(
                        f"wall-time backstop exceeded ({limits.backstop_s:g} s)"
                    ) from None
                worker.finish()
                if then is not None:
                    launch(then(worker))
    finally:
        selector.close()
        for worker in everyone:
            worker.kill()
