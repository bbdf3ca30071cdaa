"""Evaluator: controllers × hyper-parameter configurations × environments × seeds.

Work is split into (configuration, environment, question block) units and spread over worker
processes (both cores by default). Each unit runs every (question, seed) episode of its block;
a controller that fails to load, raises, or misbehaves is recorded in the results and the
other controllers keep running. Traces of the first ``trace_seeds`` seeds are kept per question.

Cost: ``configs × environments × questions × seeds`` episodes; one episode costs roughly the
number of branch-intervals the controller generates (see the README's "Evaluation cost").
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .environment import resolve_ids, shared
from .errors import BadInput
from .loader import ControllerLoadError, load_controller
from .replay import ReplayEnvironment
from .specs import DEFAULT_BETAS, ControllerLike, RunConfig, run_configs

DEFAULT_SEEDS = 100
EPISODE_TIME_LIMIT_S = 10.0


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
    """All results of one evaluation: ``rows`` (one per configuration × environment),
    ``units`` (per-question detail and traces), the seeds and the wall time.

    In a notebook: ``report`` displays as a table; ``report.per_question()`` gives the
    per-question accuracies; ``report.to_csv(path)``, ``report.plot(path)`` and
    ``report.save(directory)`` write the same files ``autotts evaluate`` writes."""

    rows: list[Row]
    units: list[UnitResult]
    seeds: int
    seconds: float

    def row(self, name: str, env_id: str, setting: str | None = None) -> Row:
        for row in self.rows:
            if row.controller == name and row.env_id == env_id and setting in (None, row.setting):
                return row
        raise KeyError(f"no result for {name} {setting or ''} on {env_id}")

    def per_question(self) -> list[dict]:
        """One dict per (configuration, environment, question): ``accuracy`` (percent of
        seeds correct) and ``mean_tokens``."""
        return [
            {
                "controller": unit.config.name,
                "setting": unit.config.setting,
                "env": unit.env_id,
                "question": q,
                "accuracy": 100 * correct / self.seeds,
                "mean_tokens": tokens / self.seeds,
            }
            for unit in self.units
            if not unit.load_error
            for q, correct, tokens in zip(unit.questions, unit.correct, unit.tokens, strict=True)
        ]

    def to_csv(self, path: str | Path | None = None) -> str:
        """The results table as CSV text, also written (atomically) to ``path`` if given."""
        from .files import atomic_write_text
        from .report import results_csv

        text = results_csv(self)
        if path is not None:
            atomic_write_text(Path(path), text)
        return text

    def to_markdown(self, with_reference: bool = False) -> str:
        from .report import markdown_table

        return markdown_table(self, with_reference)

    def plot(self, path: str | Path | None = None):
        """The accuracy-vs-tokens figure (a matplotlib ``Figure``); with ``path``, also saved
        there (``.png``/``.svg``/``.pdf`` by its suffix)."""
        from .report import curves_figure

        figure = curves_figure(self)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path, dpi=150)
        return figure

    def save(self, out_dir: str | Path, with_reference: bool = False) -> dict[str, Path]:
        """Write every output (tables, per-question CSV, traces, plots) into ``out_dir``."""
        from .report import write_outputs

        return write_outputs(self, out_dir, with_reference)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


# --- worker side -------------------------------------------------------------------------


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
    env = shared(env_id, env_dir)
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
    controllers: ControllerLike | RunConfig | Iterable[ControllerLike | RunConfig],
    envs: str | Iterable[str],
    *,
    betas: Sequence[float] | None = None,
    seeds: int = DEFAULT_SEEDS,
    env_dir: str | Path | None = None,
    workers: int | None = None,
    trace_seeds: int = 1,
    time_limit_s: float = EPISODE_TIME_LIMIT_S,
    progress: Callable[[int, int], None] | None = None,
    sandbox: bool | None = None,
    isolate: bool = True,
    **grid: Sequence[object],
) -> EvaluationReport:
    """Evaluate controllers on environments over ``seeds`` seeds each.

    ``controllers``: one or a list of short names, spec strings or paths (``"cmc"``,
    ``"sc@n=8,64"``, ``"mine.py"``), ``Controller`` subclasses or instances, or
    :class:`RunConfig` objects; ``betas`` is the β grid of those given without a sweep
    (default 0, 0.1, …, 1), ``grid`` sweeps a parameter instead (``n=[8, 64]``).
    ``envs``: environment ids or patterns (``"Qwen3-*/aime24"``, ``"all"``; see
    :func:`autotts.make`).

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
    configs = run_configs(controllers, betas, **grid)
    env_ids = resolve_ids([envs] if isinstance(envs, str) else list(envs), env_dir)
    env_dir = str(env_dir) if env_dir is not None else None
    sizes = {env_id: len(shared(env_id, env_dir)) for env_id in env_ids}
    workers = workers or min(2, os.cpu_count() or 1)
    sandboxed = _sandboxed(configs, sandbox)
    units: list[UnitResult] = []
    if sandboxed:
        from .sandbox.evaluation import evaluate_in_sandbox

        envs_by_id = {env_id: shared(env_id, env_dir) for env_id in env_ids}
        for env_id, env in envs_by_id.items():
            if not isinstance(env, ReplayEnvironment):
                raise BadInput(
                    f"{env_id}: sandboxed evaluation runs on single-model replay environments"
                )
        units += evaluate_in_sandbox(sandboxed, envs_by_id, seeds, trace_seeds, workers, isolate)
    blocks_per_env = 1 if workers == 1 else 2 * workers
    jobs = [
        (config, env_id, env_dir, block, seeds, trace_seeds, time_limit_s)
        for config in configs
        if config not in sandboxed
        for env_id in env_ids
        for block in _blocks(sizes[env_id], blocks_per_env)
    ]
    # Controllers defined in this process run in forked workers where they can be pickled
    # by reference, else here.
    here = [job for job in jobs if workers == 1 or not _can_fork(job[0])]
    pooled = [job for job in jobs if job not in here]
    total = len(jobs)
    if progress:
        progress(0, total)
    for job in here:
        units.append(run_unit(*job))
        if progress:
            progress(len(units), total)
    if pooled:
        context = multiprocessing.get_context("fork") if _in_memory(pooled) else None
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [pool.submit(run_unit, *job) for job in pooled]
            for future in as_completed(futures):
                units.append(future.result())
                if progress:
                    progress(len(units), total)
    units.sort(key=lambda u: (configs.index(u.config), env_ids.index(u.env_id), u.questions[0]))
    return EvaluationReport(
        _rows(units, configs, env_ids), units, seeds, time.perf_counter() - start
    )


def _in_memory(jobs) -> bool:
    return any(job[0].in_memory for job in jobs)


def _can_fork(config: RunConfig) -> bool:
    if not config.in_memory:
        return True
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    try:
        pickle.dumps(config)
    except Exception:
        return False
    return True


def _sandboxed(configs: Sequence[RunConfig], sandbox: bool | None) -> list[RunConfig]:
    if sandbox is False:
        return []
    if sandbox:
        return list(configs)
    from .sandbox.evaluation import is_marked_untrusted

    return [
        config
        for config in configs
        if not config.in_memory and is_marked_untrusted(config.controller)
    ]


__all__ = ["DEFAULT_BETAS", "EvaluationReport", "Row", "RunConfig", "evaluate", "run_unit"]
