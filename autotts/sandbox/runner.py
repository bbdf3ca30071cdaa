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
    UnitDecoder,
    payload_digest,
    strict_json,
)
from .static import static_problems

MAX_BRANCHES = 64  # what an untrusted candidate may open per episode (the β contract)
VERIFY_FRACTION = 0.02
VERIFY_MIN_UNITS = 64


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


def _drive(
    workers: list[_Worker],
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
    running: dict[_Worker, int] = {}  # open output streams per worker
    everyone: list[_Worker] = []

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
                raise _Rejected(f"wall-time backstop exceeded ({limits.backstop_s:g} s)")
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
                    raise _Rejected(
                        f"wall-time backstop exceeded ({limits.backstop_s:g} s)"
                    ) from None
                worker.finish()
                if then is not None:
                    launch(then(worker))
    finally:
        selector.close()
        for worker in everyone:
            worker.kill()


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
    digests: list[int | bytes | None] = [None] * len(units)
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

    decoders = {
        env_id: UnitDecoder(replayer, max_steps=max_steps, wide=wide)
        for env_id, replayer in replayers.items()
    }

    def collect(worker: _Worker, position: int, payload: bytes) -> None:
        global_index = worker.units[position]
        index, env_id, question, seed = units[global_index]
        try:
            result = decoders[env_id](payload, question, seed, seed < trace_seeds)
        except ProtocolError as exc:
            raise _Rejected(
                f"malformed reply for {env_id} question {question} seed {seed}: {exc}"
            ) from None
        digests[global_index] = payload_digest(payload)
        results.append((index, env_id, question, result))

    checkers: list[_Worker] = []
    verified: list[int] = []
    try:
        with tempfile.TemporaryDirectory(prefix="autotts-sandbox-") as workdir:
            main = [_Worker(share, collect, limits) for share in shares]
            if check_determinism:  # started now, so that they are ready when their sample is
                checkers = [_Worker([], None, limits) for _ in range(n_workers)]
                for checker in checkers:
                    checker.start(workdir)
            sampler = _Sampler(units, digests, job, verify_fraction, main, checkers)
            _drive(
                main,
                [job(share) for share in shares],
                limits,
                workdir,
                then=sampler.after if check_determinism else None,
            )
            params = main[0].params
            if len(params) != len(configs):
                raise _Rejected(
                    f"malformed reply: {len(params)} parameter sets for {len(configs)} "
                    "configurations"
                )
            if any(worker.params not in (None, params) for worker in [*main, *checkers]):
                raise _Rejected("non-deterministic: workers computed different parameters")
            verified = sampler.verified
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
        verified_units=sum(verified),
    )


class _Sampler:
    """The determinism check. As each main worker ends, a random sample is drawn, with an
    unpredictable generator, from every unit whose reply is in by then (its own and what the
    others have sent so far): ``fraction`` of all units over the checkers, in all at least
    ``VERIFY_MIN_UNITS``. A fresh, already started process (the checker paired with that
    worker) replays the sample in a random order while the other workers still run; every
    sampled unit must give the very same reply. Samples mix units of different workers, so
    state carried from one episode to the next shows up as well as randomness."""

    def __init__(self, units, digests, job, fraction: float, main, checkers):
        self.units, self.digests, self.job = units, digests, job
        self.checker_of = dict(zip(main, checkers, strict=False))
        n = max(1, len(main))
        self.size = max(math.ceil(VERIFY_MIN_UNITS / n), math.ceil(fraction * len(units) / n))
        self.sampled: set[int] = set()
        self.verified: list[int] = []
        self.rng = random.SystemRandom()

    def after(self, worker: _Worker) -> list[tuple[_Worker, dict]]:
        checker = self.checker_of.pop(worker, None)
        if checker is None:  # a checker ended, or a worker without one
            return []
        replied = [u for u, d in enumerate(self.digests) if d is not None and u not in self.sampled]
        sample = self.rng.sample(replied, min(len(replied), self.size))
        self.sampled.update(sample)
        self.verified.append(len(sample))
        checker.units, checker.handle = sample, self.compare
        return [(checker, self.job(sample))] if sample else []

    def compare(self, worker: _Worker, position: int, payload: bytes) -> None:
        global_index = worker.units[position]
        if payload_digest(payload) != self.digests[global_index]:
            index, env_id, question, seed = self.units[global_index]
            raise _Rejected(
                f"non-deterministic: {env_id} question {question} seed {seed} (configuration "
                f"{index}) gave a different episode when replayed in another process "
                "(randomness, clocks, set iteration order, or state kept across episodes?)"
            )
