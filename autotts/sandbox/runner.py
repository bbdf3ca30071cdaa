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
- as each worker ends, the parent draws a random sample of the units already reported (a
  sample the candidate cannot predict) and has a fresh process replay them in shuffled order:
  any difference rejects the candidate as non-deterministic (randomness, clocks, hash order
  or state kept across episodes).
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..engine import DEFAULT_MAX_STEPS
from ..replay import ReplayEnvironment
from .processes import Rejected, SandboxLimits, WorkerProcess, drive, require_isolation
from .protocol import ProtocolError, UnitDecoder, payload_digest
from .static import static_problems

MAX_BRANCHES = 64  # what an untrusted candidate may open per episode (the β contract)
VERIFY_FRACTION = 0.02
VERIFY_MIN_UNITS = 64


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
    class_name: str | None = None,
) -> SandboxOutcome:
    """Run ``configs`` (β, overrides) of a candidate on every (environment, question, seed)
    of ``envs`` in isolated workers and recompute every episode here.

    The workers receive the questions' branch data only (never a gold answer, a path or a
    store); ``envs`` stay in the parent. ``isolate=False`` runs the workers without OS
    isolation (``--unsafe-no-sandbox``); with ``isolate=True`` a machine that cannot isolate
    raises :class:`IsolationUnavailable`. ``static_check=False`` and ``audit_hook=False``
    switch off the two Python-level layers (to test the OS layer on its own).
    ``class_name`` picks one class of a file that defines several (``file.py:Class``).
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
            "class_name": class_name,
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

    def collect(worker: WorkerProcess, position: int, payload: bytes) -> None:
        global_index = worker.units[position]
        index, env_id, question, seed = units[global_index]
        try:
            result = decoders[env_id](payload, question, seed, seed < trace_seeds)
        except ProtocolError as exc:
            raise Rejected(
                f"malformed reply for {env_id} question {question} seed {seed}: {exc}"
            ) from None
        digests[global_index] = payload_digest(payload)
        results.append((index, env_id, question, result))

    checkers: list[WorkerProcess] = []
    verified: list[int] = []
    try:
        with tempfile.TemporaryDirectory(prefix="autotts-sandbox-") as workdir:
            main = [WorkerProcess(share, collect, limits) for share in shares]
            if check_determinism:  # started now, so that they are ready when their sample is
                checkers = [WorkerProcess([], None, limits) for _ in range(n_workers)]
                for checker in checkers:
                    checker.start(workdir)
            sampler = _Sampler(units, digests, job, verify_fraction, main, checkers)
            drive(
                main,
                [job(share) for share in shares],
                limits,
                workdir,
                then=sampler.after if check_determinism else None,
            )
            params = main[0].params
            if len(params) != len(configs):
                raise Rejected(
                    f"malformed reply: {len(params)} parameter sets for {len(configs)} "
                    "configurations"
                )
            if any(worker.params not in (None, params) for worker in [*main, *checkers]):
                raise Rejected("non-deterministic: workers computed different parameters")
            verified = sampler.verified
    except Rejected as exc:
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

    def after(self, worker: WorkerProcess) -> list[tuple[WorkerProcess, dict]]:
        checker = self.checker_of.pop(worker, None)
        if checker is None:  # a checker ended, or a worker without one
            return []
        replied = [u for u, d in enumerate(self.digests) if d is not None and u not in self.sampled]
        sample = self.rng.sample(replied, min(len(replied), self.size))
        self.sampled.update(sample)
        self.verified.append(len(sample))
        checker.units, checker.handle = sample, self.compare
        return [(checker, self.job(sample))] if sample else []

    def compare(self, worker: WorkerProcess, position: int, payload: bytes) -> None:
        global_index = worker.units[position]
        if payload_digest(payload) != self.digests[global_index]:
            index, env_id, question, seed = self.units[global_index]
            raise Rejected(
                f"non-deterministic: {env_id} question {question} seed {seed} (configuration "
                f"{index}) gave a different episode when replayed in another process "
                "(randomness, clocks, set iteration order, or state kept across episodes?)"
            )
