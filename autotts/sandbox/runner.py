"""The parent side of the sandbox: start isolated workers, read their replies without
trusting them, score nothing a worker computed, and check determinism on a random sample.

Guarantees of :func:`run_sandboxed` (with ``isolate=True``, on Linux with namespaces,
Landlock and seccomp; see the README's threat model):

- the candidate runs only in a worker that can read no file, write no file, open no socket,
  start no process and signal nothing outside itself, under kernel limits of CPU time,
  address space and open files; every process of a worker is killed when its evaluation ends;
- the parent reads replies with bounded buffers (a line cap and a total cap per worker) and
  a strict schema, requires exactly one result per assigned unit in order, and recomputes
  every episode's tokens, validity and revealed answers by replaying its action log on the
  parent's own engine; a malformed reply rejects the candidate with a reason, never crashes
  the run;
- after every reply is in, the parent draws a random sample of units (a sample the
  candidate cannot predict) and has a fresh process replay them in shuffled order: any
  difference rejects the candidate as non-deterministic (randomness, clocks, hash order or
  state kept across episodes).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import pickle
import random
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..replay import DEFAULT_MAX_STEPS, ReplayEnvironment
from .protocol import (
    EXIT_CPU,
    EXIT_IDLE,
    EXIT_ISOLATION,
    MAX_HEADER_BYTES,
    MAX_LINE_BYTES,
    MAX_TEXT_CHARS,
    ProtocolError,
    decode_unit,
    payload_digest,
    strict_json,
)
from .static import static_problems

MAX_BRANCHES = 64  # what an untrusted candidate may open per episode (the β contract)
VERIFY_FRACTION = 0.05
VERIFY_MIN_UNITS = 32


class IsolationUnavailable(RuntimeError):
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


@dataclass
class SandboxOutcome:
    """What the parent established: episode results per unit, or why the candidate was
    rejected."""

    ok: bool
    reason: str = ""
    results: list = field(default_factory=list)  # (config_index, env_id, question, EpisodeResult)
    params: list = field(default_factory=list)  # run() parameters of each config (display only)
    seconds: float = 0.0
    verified_units: int = 0


class _Rejected(Exception):
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
            "allowed), or pass --unsafe-no-sandbox to run it without containment (only for "
            "code you trust)."
        )


def _worker_environment() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


class _Worker:
    """One worker process and the units it owes, read line by line."""

    def __init__(self, units: list[int], handle, limits: SandboxLimits):
        self.units = units  # global unit indices, in the order the worker runs them
        self.handle = handle  # (worker, position, payload) → None; raises _Rejected
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
            raise _Rejected(f"the reply exceeds {self.limits.reply_mb} MB")
        lines = (self.pending + chunk).split(b"\n")
        self.pending = lines.pop()
        if len(self.pending) > MAX_LINE_BYTES:
            raise _Rejected(f"a reply line exceeds {MAX_LINE_BYTES >> 20} MB")
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        tag, tab, payload = line.partition(b"\t")
        if not tab:
            raise _Rejected("malformed reply: a line without a tab")
        if self.params is None:
            if len(line) > MAX_HEADER_BYTES:
                raise _Rejected("malformed reply: the header line is too long")
            try:
                message = strict_json(payload)
            except ProtocolError as exc:
                raise _Rejected(f"malformed reply: the header line: {exc}") from None
            if tag == b"E":
                if type(message) is not str:
                    raise _Rejected("malformed reply: the load error is not a string")
                raise _Rejected(message[:MAX_TEXT_CHARS])
            if tag != b"P":
                raise _Rejected("malformed reply: it does not start with the parameters")
            params = message
            if type(params) is not list or not all(type(p) is dict for p in params):
                raise _Rejected("malformed reply: parameters must be a list of objects")
            self.params = params
            return
        if tag != b"%d" % self.next or self.next >= len(self.units):
            raise _Rejected(
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
            raise _Rejected(f"CPU-time limit exceeded ({self.limits.cpu_s:g} s of CPU)")
        if code == EXIT_IDLE:
            raise _Rejected(
                f"the worker stopped computing for {self.limits.idle_s:g} s (sleeping or blocked)"
            )
        if code > 128:
            try:
                name = signal.Signals(code - 128).name
            except ValueError:
                name = f"signal {code - 128}"
            raise _Rejected(f"sandbox worker killed by {name}")
        if code != 0:
            if "MemoryError" in last:
                raise _Rejected(f"memory limit exceeded ({self.limits.memory_mb} MB)")
            raise _Rejected(f"sandbox worker failed: {last or f'exit code {code}'}")
        if self.pending:
            raise _Rejected("malformed reply: the last line is incomplete")
        if self.params is None or self.next != len(self.units):
            raise _Rejected(
                f"malformed reply: {self.next} of {len(self.units)} units were reported"
            )

    def kill(self) -> None:
        """Kill every process of the worker's session (the supervisor and the runner, which
        is PID 1 of its own PID namespace), and wait until none is left."""
        if self.process is None:
            return
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        self.process.wait()
        for _ in range(200):
            try:
                os.killpg(group, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.01)


def _drive(workers: list[_Worker], jobs: list[dict], limits: SandboxLimits, workdir: str) -> None:
    """Run the workers to the end (starting those not started yet), feeding their output to
    their handlers; every process is killed on the way out, whatever happened."""
    deadline = time.monotonic() + limits.backstop_s
    selector = selectors.DefaultSelector()
    try:
        for worker in workers:  # all start at once; each imports while the others do
            if worker.process is None:
                worker.start(workdir)
        for worker, job in zip(workers, jobs, strict=True):
            worker.send(job)
            for stream, kind in (
                (worker.process.stdout, "out"),
                (worker.process.stderr, "err"),
            ):
                os.set_blocking(stream.fileno(), False)
                selector.register(stream, selectors.EVENT_READ, (worker, kind))
        open_streams = 2 * len(workers)
        while open_streams:
            if time.monotonic() > deadline:
                raise _Rejected(f"wall-time backstop exceeded ({limits.backstop_s:g} s)")
            for key, _ in selector.select(timeout=0.5):
                worker, kind = key.data
                chunk = os.read(key.fd, 1 << 20)
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                elif kind == "err":
                    worker.stderr = (worker.stderr + chunk)[-4096:]
                else:
                    worker.feed(chunk)
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise _Rejected(f"wall-time backstop exceeded ({limits.backstop_s:g} s)") from None
            worker.finish()
    finally:
        selector.close()
        for worker in workers:
            worker.kill()
            for stream in (
                worker.process and worker.process.stdout,
                worker.process and worker.process.stderr,
            ):
                if stream is not None:
                    stream.close()


def run_sandboxed(
    source: str,
    envs: Mapping[str, ReplayEnvironment],
    configs: list[tuple[float | None, dict]],
    seeds: int,
    *,
    workers: int = 2,
    trace_seeds: int = 1,
    limits: SandboxLimits | None = None,
    check_determinism: bool = True,
    static_check: bool = True,
    audit_hook: bool = True,
    isolate: bool = True,
    max_branches: int | None = MAX_BRANCHES,
    max_steps: int = DEFAULT_MAX_STEPS,
    verify_fraction: float = VERIFY_FRACTION,
) -> SandboxOutcome:
    """Run ``configs`` (β, overrides) of a candidate on every (environment, question, seed)
    of ``envs`` in isolated workers and recompute every episode here.

    The workers receive the questions' branch data only (never a gold answer, a path or a
    store); ``envs`` stay in the parent. ``isolate=False`` runs the workers without OS
    isolation (``--unsafe-no-sandbox``); with ``isolate=True`` a machine that cannot isolate
    raises :class:`IsolationUnavailable`. ``static_check=False`` and ``audit_hook=False``
    switch off the two Python-level layers (to test the OS layer on its own).
    """
    limits = limits or SandboxLimits()
    start = time.monotonic()

    def rejected(reason: str) -> SandboxOutcome:
        return SandboxOutcome(False, reason, seconds=time.monotonic() - start)

    problems = static_problems(source) if static_check else []
    if problems:
        return rejected("static check: " + "; ".join(problems[:5]))
    if isolate:
        require_isolation()
    replayers = {
        env_id: ReplayEnvironment.without_gold(
            env_id, env.questions, branch_limit=max_branches, max_steps=max_steps
        )
        for env_id, env in envs.items()
    }
    widest = max((len(q.tokens) for env in envs.values() for q in env.questions), default=0)
    wide = min(widest, max_branches or widest) > 256
    units = [
        (index, env_id, question, seed)
        for env_id, env in envs.items()
        for question in range(len(env))
        for index in range(len(configs))
        for seed in range(seeds)
    ]
    per_question = len(configs) * seeds
    n_workers = max(1, min(workers, len(units) // max(1, per_question)))
    shares: list[list[int]] = [[] for _ in range(n_workers)]
    for block, first in enumerate(range(0, len(units), per_question)):
        shares[block % n_workers].extend(range(first, first + per_question))
    digests: list[bytes | None] = [None] * len(units)
    results: list = []

    def job(share: list[int]) -> dict:
        needed = {units[u][1] for u in share}
        return {
            "source": source,
            "envs": {env_id: envs[env_id].questions for env_id in needed},
            "configs": configs,
            "units": [units[u] for u in share],
            "max_branches": max_branches,
            "max_steps": max_steps,
            "wide": wide,
            "episode_cpu_s": limits.episode_cpu_s,
            "cpu_s": limits.cpu_s,
            "memory_mb": limits.memory_mb,
            "idle_s": limits.idle_s,
            "isolate": isolate,
            "audit_hook": audit_hook,
        }

    def decode(global_index: int, payload: bytes, keep_log: bool):
        index, env_id, question, seed = units[global_index]
        source_ = replayers[env_id].episode_source(question, seed)
        try:
            return decode_unit(
                payload, source_, question, seed, max_steps=max_steps, wide=wide,
                keep_log=keep_log,
            )  # fmt: skip
        except ProtocolError as exc:
            raise _Rejected(
                f"malformed reply for {env_id} question {question} seed {seed}: {exc}"
            ) from None

    def collect(worker: _Worker, position: int, payload: bytes) -> None:
        global_index = worker.units[position]
        index, env_id, question, seed = units[global_index]
        result = decode(global_index, payload, seed < trace_seeds)
        digests[global_index] = payload_digest(payload)
        results.append((index, env_id, question, result))

    checkers: list[_Worker] = []
    try:
        with tempfile.TemporaryDirectory(prefix="autotts-sandbox-") as workdir:
            main = [_Worker(share, collect, limits) for share in shares]
            if check_determinism:  # started now, so that they are ready when the sample is
                checkers = [_Worker([], None, limits) for _ in range(n_workers)]
                for checker in checkers:
                    checker.start(workdir)
            _drive(main, [job(share) for share in shares], limits, workdir)
            params = main[0].params
            if len(params) != len(configs):
                raise _Rejected(
                    f"malformed reply: {len(params)} parameter sets for {len(configs)} "
                    "configurations"
                )
            if any(worker.params != params for worker in main):
                raise _Rejected("non-deterministic: workers computed different parameters")
            verified = 0
            if check_determinism:
                verified = _verify_sample(
                    units, digests, job, limits, params, verify_fraction, checkers, workdir
                )
    except _Rejected as exc:
        return rejected(str(exc))
    finally:
        for checker in checkers:
            checker.kill()
    return SandboxOutcome(
        True,
        results=results,
        params=params,
        seconds=time.monotonic() - start,
        verified_units=verified,
    )


def _verify_sample(
    units, digests, job, limits: SandboxLimits, params, fraction: float, checkers, workdir
) -> int:
    """Replay a random sample of units (``fraction`` of them, at least
    ``VERIFY_MIN_UNITS``), drawn now that every reply is in, in a random order, in the
    fresh (already started) processes ``checkers``; every one must give the very same
    reply."""
    rng = random.SystemRandom()
    size = min(len(units), max(VERIFY_MIN_UNITS, math.ceil(fraction * len(units))))
    sample = rng.sample(range(len(units)), size)

    def compare(worker: _Worker, position: int, payload: bytes) -> None:
        global_index = worker.units[position]
        if payload_digest(payload) != digests[global_index]:
            index, env_id, question, seed = units[global_index]
            raise _Rejected(
                f"non-deterministic: {env_id} question {question} seed {seed} (configuration "
                f"{index}) gave a different episode when replayed in another process "
                "(randomness, clocks, set iteration order, or state kept across episodes?)"
            )

    busy = []
    for n, checker in enumerate(checkers):
        checker.units, checker.handle = sample[n :: len(checkers)], compare
        if checker.units:
            busy.append(checker)
    _drive(busy, [job(checker.units) for checker in busy], limits, workdir)
    if any(checker.params != params for checker in busy):
        raise _Rejected("non-deterministic: a fresh process computed different parameters")
    return size
