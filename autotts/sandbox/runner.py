"""The parent side of the sandbox: start isolated workers, be the engine of their episodes,
and check that an accepted candidate is deterministic.

Guarantees of :func:`run_sandboxed` (with ``isolate=True``, on Linux with namespaces,
Landlock and seccomp; the threat model is docs/guides/sandbox.md):

- the candidate runs only in a worker that can read no file, write no file, open no socket,
  start no process, signal nothing outside itself, and read no clock and no random source,
  under kernel limits of CPU time, address space and open files; every process of a worker
  is killed when its evaluation ends;
- the worker holds no store data: its job carries each episode's public header (question
  text, Δ, branch limit, models) and it learns only what its actions reveal, from the parent,
  which plays every episode on its own engine (:mod:`.serving`): tokens, validity, revealed
  answers and steps are the parent's; the worker sends actions and answers, read with bounded
  buffers and a strict schema; a malformed frame rejects the candidate with a reason, never
  crashes the run;
- a worker evaluated twice with the same job behaves the same (fixed hash secret, no address
  randomisation, no clock, no random device, frames read at exact lengths); as each worker
  ends, a random sample of units is replayed by a fresh process in a shuffled arrangement, so
  state carried from one episode to another (which the candidate could use to answer an
  episode with what another one paid for) rejects the candidate.
"""

from __future__ import annotations

import copy
import math
import random
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..core.engine import DEFAULT_MAX_STEPS
from ..core.environment import EpisodeRunner
from .limits import Rejected, SandboxLimits
from .processes import WorkerProcess, drive, require_isolation
from .remote import header_of
from .serving import EpisodeServer, TraceBudget
from .static import static_problems

MAX_BRANCHES = 64  # what an untrusted candidate may open per episode (the β contract)
IN_FLIGHT = 32  # episodes per group, two groups a worker (more only spill the caches)
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
    envs: Mapping[str, EpisodeRunner],
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
    in_flight: int = IN_FLIGHT,
) -> SandboxOutcome:
    """Run ``configs`` (β, overrides) of a candidate on every (environment, question, seed)
    of ``envs`` (replay or cross-model environments) in isolated workers, each episode played
    on the parent's engine.

    The workers receive the episodes' public headers only (never branch data, a gold answer,
    a path or a store). ``isolate=False`` runs the workers without OS isolation
    (``--unsafe-no-sandbox``); with ``isolate=True`` a machine that cannot isolate raises
    :class:`IsolationUnavailable`. ``static_check=False`` and ``audit_hook=False`` switch off
    the two Python-level layers (to test the OS layer on its own). ``class_name`` picks one
    class of a file that defines several (``file.py:Class``).
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
    engines = {env_id: _limited(env, max_branches, max_steps) for env_id, env in envs.items()}
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
    digests: list[tuple | None] = [None] * len(units)
    results: list = []
    budget = TraceBudget()
    headers: dict[tuple[str, int], tuple] = {}

    def header(env_id: str, question: int) -> tuple:
        key = (env_id, question)
        if key not in headers:
            source = engines[env_id].episode_source(question, 0)
            headers[key] = header_of(source[0](*source[1:]).state)
        return headers[key]

    def job(share: list[int], done) -> tuple[dict, EpisodeServer]:
        keys = list(dict.fromkeys((units[u][1], units[u][2]) for u in share))
        position = {key: n for n, key in enumerate(keys)}
        payload = {
            "source": source,
            "class_name": class_name,
            "configs": configs,
            "headers": [header(*key) for key in keys],
            "units": [(units[u][0], position[units[u][1], units[u][2]]) for u in share],
            "in_flight": in_flight,
            "cpu_s": limits.cpu_s,
            "memory_mb": limits.memory_mb,
            "isolate": isolate,
            "audit_hook": audit_hook,
        }
        served = [(engines[units[u][1]], units[u][2], units[u][3]) for u in share]
        server = EpisodeServer(
            served,
            in_flight,
            max_steps,
            traced=lambda n: done is collect and units[share[n]][3] < trace_seeds,
            done=lambda n, result: done(share[n], result),
            budget=budget,
        )
        return payload, server

    def collect(unit: int, result) -> None:
        digests[unit] = _digest(result)
        results.append((units[unit][0], units[unit][1], units[unit][2], result))

    checkers: list[WorkerProcess] = []
    verified: list[int] = []
    try:
        with tempfile.TemporaryDirectory(prefix="autotts-sandbox-") as workdir:
            main = [WorkerProcess(limits) for _ in shares]
            if check_determinism:  # started now, so that they are ready when their sample is
                checkers = [WorkerProcess(limits) for _ in range(n_workers)]
                for checker in checkers:
                    checker.start(workdir)
            sampler = _Sampler(units, digests, job, verify_fraction, main, checkers)
            drive(
                main,
                [job(share, collect) for share in shares],
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
    results.sort(key=lambda r: (r[1], r[2], r[0], r[3].seed))
    return SandboxOutcome(
        True,
        results=results,
        params=params,
        seconds=time.monotonic() - start,
        verified_units=sum(verified),
    )


def _limited(env: EpisodeRunner, max_branches: int | None, max_steps: int) -> EpisodeRunner:
    """``env`` with the candidate's branch limit and step limit."""
    limited = copy.copy(env)
    limited.branch_limit, limited.max_steps = max_branches, max_steps
    return limited


def _digest(result) -> tuple:
    return (result.answer, result.error, result.reason, result.tokens, result.probe_tokens,
            result.opened, result.steps, result.cost)  # fmt: skip


class _Sampler:
    """The check against state carried across episodes. As each main worker ends, a random
    sample is drawn, with an unpredictable generator, from every unit whose result is in by
    then (its own and what the others have sent so far): ``fraction`` of all units over the
    checkers, in all at least ``VERIFY_MIN_UNITS``. A fresh, already started process (the
    checker paired with that worker) plays the sample in a random order, so beside other
    episodes than the first time, while the other workers still run; every sampled unit must
    end the very same way."""

    def __init__(self, units, digests, job, fraction: float, main, checkers):
        self.units, self.digests, self.job = units, digests, job
        self.checker_of = dict(zip(main, checkers, strict=False))
        n = max(1, len(main))
        self.size = max(math.ceil(VERIFY_MIN_UNITS / n), math.ceil(fraction * len(units) / n))
        self.sampled: set[int] = set()
        self.verified: list[int] = []
        self.rng = random.SystemRandom()

    def after(self, worker: WorkerProcess) -> list[tuple[WorkerProcess, tuple]]:
        checker = self.checker_of.pop(worker, None)
        if checker is None:  # a checker ended, or a worker without one
            return []
        replied = [u for u, d in enumerate(self.digests) if d is not None and u not in self.sampled]
        sample = self.rng.sample(replied, min(len(replied), self.size))
        self.sampled.update(sample)
        self.verified.append(len(sample))
        return [(checker, self.job(sample, self.compare))] if sample else []

    def compare(self, unit: int, result) -> None:
        if _digest(result) != self.digests[unit]:
            index, env_id, question, seed = self.units[unit]
            raise Rejected(
                f"non-deterministic: {env_id} question {question} seed {seed} (configuration "
                f"{index}) ended differently when played again beside other episodes "
                "(state kept across episodes, or randomness?)"
            )
