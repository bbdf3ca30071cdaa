"""Evaluator: controllers × hyper-parameter configurations × environments × seeds.

Work is split into (configuration, environment, question block) units and spread over worker
processes (both cores by default). Each unit runs every (question, seed) episode of its block;
a controller that fails to load, raises, or misbehaves is recorded in the results and the
other controllers keep running. Traces of the first ``trace_seeds`` seeds are kept per question.

Cost: ``configs × environments × questions × seeds`` episodes; one episode costs roughly the
number of branch-intervals the controller generates (see the README's "Evaluation cost").
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .crossmodel import load_environment
from .loader import ControllerLoadError, load_controller
from .replay import ReplayEnvironment

DEFAULT_SEEDS = 100
DEFAULT_BETAS = tuple(round(0.1 * i, 1) for i in range(11))
EPISODE_TIME_LIMIT_S = 10.0


@dataclass(frozen=True)
class RunConfig:
    """One controller at one point of its sweep: ``beta`` and/or explicit parameter overrides."""

    controller: str
    label: str = ""
    beta: float | None = None
    overrides: tuple[tuple[str, object], ...] = ()

    @property
    def name(self) -> str:
        return self.label or Path(self.controller).stem.replace("_", "-")

    @property
    def setting(self) -> str:
        """Short human form of the sweep point, e.g. ``β=0.5`` or ``n=64``."""
        parts = [f"β={self.beta:g}"] if self.beta is not None else []
        parts += [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.overrides]
        return ", ".join(parts) or "default"


@dataclass
class UnitResult:
    """Per-question aggregates of one (config, environment, question block) unit."""

    config: RunConfig
    env_id: str
    questions: list[int]
    correct: list[int]  # per question: number of correct seeds
    tokens: list[int]  # per question: summed tokens over seeds
    episodes: int = 0
    errors: int = 0
    first_error: str | None = None
    load_error: str | None = None
    traces: list[dict] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Row:
    """One line of the results table."""

    controller: str
    setting: str
    env_id: str
    accuracy: float  # percent, averaged over questions and seeds
    tokens: float  # mean tokens per question
    episodes: int
    errors: int
    status: str
    seconds: float
    config: RunConfig

    @property
    def tokens_k(self) -> str:
        """Mean tokens in k as the paper prints them (rounded to whole tokens first)."""
        if self.tokens != self.tokens:  # NaN: nothing ran
            return "-"
        return "%.1fk" % (round(self.tokens) / 1000)


@dataclass
class EvaluationReport:
    """All results of one evaluation: rows, per-question detail, traces."""

    rows: list[Row]
    units: list[UnitResult]
    seeds: int
    seconds: float

    def row(self, name: str, env_id: str, setting: str | None = None) -> Row:
        for row in self.rows:
            if row.controller == name and row.env_id == env_id and setting in (None, row.setting):
                return row
        raise KeyError(f"no result for {name} {setting or ''} on {env_id}")


# --- worker side -------------------------------------------------------------------------

_ENVS: dict[tuple[str, str | None], ReplayEnvironment] = {}


class EpisodeTimeout(Exception):
    """Raised inside a controller whose episode used more CPU time than allowed."""


class Watchdog:
    """Interrupts an episode that uses more than ``limit_s`` seconds of *CPU time* (main
    thread, POSIX only): a CPU-time timer (``ITIMER_PROF``) checks when the current episode
    started. CPU time, not wall-clock time, so a loaded machine never changes a result."""

    def __init__(self, limit_s: float):
        self.limit_s = limit_s
        self.started = time.process_time()
        self.enabled = hasattr(signal, "setitimer") and _is_main_thread()

    def __enter__(self) -> Watchdog:
        if self.enabled:
            self.previous = signal.signal(signal.SIGPROF, self._check)
            period = min(0.5, self.limit_s / 4)
            signal.setitimer(signal.ITIMER_PROF, period, period)
        return self

    def reset(self) -> None:
        """Mark the start of the next episode."""
        self.started = time.process_time()

    def _check(self, signum, frame) -> None:
        if time.process_time() - self.started > self.limit_s:
            self.started = time.process_time()
            raise EpisodeTimeout(f"episode exceeded the CPU-time limit of {self.limit_s:g} s")

    def __exit__(self, *exc) -> None:
        if self.enabled:
            signal.setitimer(signal.ITIMER_PROF, 0, 0)
            signal.signal(signal.SIGPROF, self.previous)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _environment(env_id: str, env_dir: str | None) -> ReplayEnvironment:
    key = (env_id, env_dir)
    if key not in _ENVS:
        _ENVS[key] = load_environment(env_id, env_dir)
    return _ENVS[key]


def run_unit(
    config: RunConfig,
    env_id: str,
    env_dir: str | None,
    questions: Sequence[int],
    seeds: int,
    trace_seeds: int,
    time_limit_s: float = EPISODE_TIME_LIMIT_S,
) -> UnitResult:
    """Evaluate one configuration on a block of questions of one environment."""
    from .traces import episode_record

    start = time.perf_counter()
    unit = UnitResult(config, env_id, list(questions), [0] * len(questions), [0] * len(questions))
    try:
        controller = load_controller(config.controller)
        params = controller.params(config.beta, **dict(config.overrides))
    except (ControllerLoadError, ValueError) as exc:
        unit.load_error = str(exc)
        return unit
    except Exception as exc:
        unit.load_error = f"schedule() failed: {type(exc).__name__}: {exc}"
        return unit
    env = _environment(env_id, env_dir)
    with Watchdog(time_limit_s) as watchdog:
        for slot, question in enumerate(questions):
            correct = tokens = 0
            for seed in range(seeds):
                watchdog.reset()
                result = env.run_episode(controller, params, question, seed)
                if result.error is not None:
                    unit.errors += 1
                    if unit.first_error is None:
                        unit.first_error = f"question {question}, seed {seed}: {result.error}"
                elif env.is_correct(question, result.answer):
                    correct += 1
                tokens += result.tokens
                if seed < trace_seeds:
                    unit.traces.append(episode_record(env, config, params, result))
            unit.correct[slot] = correct
            unit.tokens[slot] = tokens
            unit.episodes += seeds
    unit.seconds = time.perf_counter() - start
    return unit


# --- driver side -------------------------------------------------------------------------


def _blocks(n_questions: int, n_blocks: int) -> list[list[int]]:
    size = max(1, -(-n_questions // n_blocks))
    return [list(range(i, min(i + size, n_questions))) for i in range(0, n_questions, size)]


def _rows(
    units: list[UnitResult], configs: Sequence[RunConfig], env_ids: Sequence[str]
) -> list[Row]:
    rows = []
    for config in configs:
        for env_id in env_ids:
            mine = [u for u in units if u.config == config and u.env_id == env_id]
            load_error = next((u.load_error for u in mine if u.load_error), None)
            episodes = sum(u.episodes for u in mine)
            errors = sum(u.errors for u in mine)
            if load_error:
                status = f"failed: {load_error}"
            elif errors:
                first = next(u.first_error for u in mine if u.first_error)
                status = f"{errors} episode errors; first: {first}"
            else:
                status = "ok"
            accuracy = (
                100.0 * sum(sum(u.correct) for u in mine) / episodes if episodes else float("nan")
            )
            tokens = sum(sum(u.tokens) for u in mine) / episodes if episodes else float("nan")
            rows.append(
                Row(
                    config.name,
                    config.setting,
                    env_id,
                    accuracy,
                    tokens,
                    episodes,
                    errors,
                    status,
                    sum(u.seconds for u in mine),
                    config,
                )
            )
    return rows


def evaluate(
    configs: Sequence[RunConfig],
    env_ids: Sequence[str],
    *,
    seeds: int = DEFAULT_SEEDS,
    env_dir: str | Path | None = None,
    workers: int | None = None,
    trace_seeds: int = 1,
    time_limit_s: float = EPISODE_TIME_LIMIT_S,
    progress: Callable[[int, int], None] | None = None,
    sandbox: bool | None = None,
    isolate: bool = True,
) -> EvaluationReport:
    """Evaluate every configuration on every environment over ``seeds`` seeds.

    Environments are validated up front (a bad id or store raises
    :class:`~autotts.store.StoreError`); repeated configurations are evaluated once;
    controller problems never raise: they are reported in each row's ``status``.
    ``progress(done, total)`` is called as units complete.

    ``sandbox``: run every controller file in the sandbox (``True``), none (``False``), or
    only files marked untrusted by ``autotts export`` (``None``, the default); ``isolate``
    as in :func:`autotts.sandbox.run_sandboxed` (a machine without OS isolation raises
    :class:`~autotts.sandbox.IsolationUnavailable`).
    """
    start = time.perf_counter()
    configs = list(dict.fromkeys(configs))
    env_ids = list(dict.fromkeys(env_ids))
    env_dir = str(env_dir) if env_dir is not None else None
    sizes = {env_id: len(_environment(env_id, env_dir)) for env_id in env_ids}
    workers = workers or min(2, os.cpu_count() or 1)
    sandboxed = _sandboxed(configs, sandbox)
    units: list[UnitResult] = []
    if sandboxed:
        from .sandbox.evaluation import evaluate_in_sandbox

        envs = {env_id: _environment(env_id, env_dir) for env_id in env_ids}
        for env_id, env in envs.items():
            if not isinstance(env, ReplayEnvironment):
                raise ValueError(
                    f"{env_id}: sandboxed evaluation runs on single-model replay environments"
                )
        units += evaluate_in_sandbox(sandboxed, envs, seeds, trace_seeds, workers, isolate)
    blocks_per_env = 1 if workers == 1 else 2 * workers
    jobs = [
        (config, env_id, env_dir, block, seeds, trace_seeds, time_limit_s)
        for config in configs
        if config not in sandboxed
        for env_id in env_ids
        for block in _blocks(sizes[env_id], blocks_per_env)
    ]
    if progress:
        progress(0, len(jobs))
    if workers == 1:
        for done, job in enumerate(jobs, 1):
            units.append(run_unit(*job))
            if progress:
                progress(done, len(jobs))
    elif jobs:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(run_unit, *job) for job in jobs]
            for done, future in enumerate(as_completed(futures), 1):
                units.append(future.result())
                if progress:
                    progress(done, len(jobs))
    units.sort(key=lambda u: (configs.index(u.config), env_ids.index(u.env_id), u.questions[0]))
    return EvaluationReport(
        _rows(units, configs, env_ids), units, seeds, time.perf_counter() - start
    )


def _sandboxed(configs: Sequence[RunConfig], sandbox: bool | None) -> list[RunConfig]:
    if sandbox is False:
        return []
    if sandbox:
        return list(configs)
    from .sandbox.evaluation import is_marked_untrusted

    return [config for config in configs if is_marked_untrusted(config.controller)]


__all__ = ["RunConfig", "EvaluationReport", "Row", "evaluate", "run_unit"]
