"""Evaluator: controllers × hyper-parameter configurations × environments × seeds.

Work is split into (configuration, environment, question block) units and spread over worker
processes (both cores by default). Each unit runs every (question, seed) episode of its block;
a controller that fails to load, raises, or misbehaves is recorded in the results and the
other controllers keep running. Traces of the first ``trace_seeds`` seeds are kept per question.

Cost: ``configs × environments × questions × seeds`` episodes; one episode costs roughly the
number of branch-intervals the controller generates (see "Evaluation cost" in docs/guides/evaluating.md).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from ..core.environment import EpisodeRunner
from ..core.episodes import EPISODE_TIME_LIMIT_S, MAX_TIMEOUTS, Tally, play_episodes, timed_out
from ..envs.registry import resolve_ids, shared
from ..errors import BadInput
from ..loading.controller_files import ControllerLoadError, load_controller, trust_marked_files
from ..loading.run_configs import (
    DEFAULT_BETAS,
    ControllerLike,
    RunConfig,
    check_configs,
    run_configs,
)
from ..results.evaluation_report import EvaluationReport, Row, UnitResult
from ..results.stats import estimate

DEFAULT_SEEDS = 100


# --- worker side -------------------------------------------------------------------------


def run_unit(
    config: RunConfig,
    env_id: str,
    env_dir: str | None,
    questions: Sequence[int],
    seeds: int,
    trace_seeds: int,
    time_limit_s: float = EPISODE_TIME_LIMIT_S,
    stop_on_error: bool = False,
    env_options: dict | None = None,
) -> UnitResult:
    """Evaluate one configuration on a block of questions of one environment
    (``stop_on_error``: re-raise the first failed episode's exception, traceback included)."""
    from ..results.traces import episode_record

    start = time.perf_counter()
    unit = UnitResult.empty(config, env_id, questions, seeds)
    try:
        controller = load_controller(config.controller)
        params = controller.params(config.beta, **dict(config.overrides))
    except (ControllerLoadError, ValueError) as exc:
        unit.load_error = str(exc)
        return unit
    except Exception as exc:
        unit.load_error = f"schedule() failed: {type(exc).__name__}: {exc}"
        return unit
    env = shared(env_id, env_dir, **(env_options or {}))
    slots = {question: slot for slot, question in enumerate(questions)}
    tally = Tally()
    episodes = ((env, params, q, seed) for q in questions for seed in range(seeds))
    timeouts = 0
    for result in play_episodes(controller, episodes, time_limit_s=time_limit_s):
        unit.record(slots[result.question], result.seed, tally.add(env, result), result.tokens)
        if result.seed < trace_seeds:
            unit.traces.append(episode_record(env, config, params, result))
        if stop_on_error and result.exception is not None:
            raise result.exception
        timeouts += timed_out(result)
        if timeouts >= MAX_TIMEOUTS:  # a hung controller: do not wait out every episode
            unit.load_error = (
                f"stopped after {timeouts} episodes ran past the {time_limit_s:g} s CPU-time "
                f"limit (does run() loop forever?); first: {tally.first_error}"
            )
            break
    unit.episodes, unit.errors, unit.first_error = tally.episodes, tally.errors, tally.first_error
    unit.seconds = time.perf_counter() - start
    return unit


# --- driver side -------------------------------------------------------------------------


def _blocks(n_questions: int, n_blocks: int) -> list[list[int]]:
    size = max(1, -(-n_questions // n_blocks))
    return [list(range(i, min(i + size, n_questions))) for i in range(0, n_questions, size)]


def summarise_units(
    units: list[UnitResult],
    configs: Sequence[RunConfig],
    env_ids: Sequence[str],
    intervals: bool = True,
) -> list[Row]:
    """One row per (configuration, environment) from its units (``intervals``: with the
    bootstrap estimates, the costly part)."""
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
            measured = intervals and episodes and not load_error
            estimates = _estimates(mine) if measured else (None, None)
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
                    *estimates,
                )
            )
    return rows


def _estimates(units: list[UnitResult]) -> tuple:
    """Accuracy (percent) and tokens of a configuration on one environment with their
    two-level bootstrap uncertainty (questions, then seeds within question)."""
    correct = [row for u in units for row in u.seed_correct]
    tokens = [row for u in units for row in u.seed_tokens]
    if not correct or not correct[0]:
        return None, None
    accuracy = estimate([100.0 * np.asarray(correct, dtype=float)])
    return accuracy, estimate([np.asarray(tokens, dtype=float)])


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
    stop_on_error: bool = False,
    canonicalize: bool = False,
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
    :class:`~autotts.envs.stores.StoreError`); repeated configurations are evaluated once;
    controller problems never raise: they are reported in each row's ``status``.
    ``progress(done, total)`` is called as units complete.

    ``sandbox``: run every controller file in the sandbox (``True``), none (``False``), or
    only files marked untrusted by ``autotts export`` (``None``, the default); ``isolate``
    as in :func:`autotts.sandbox.run_sandboxed` (a machine without OS isolation raises
    :class:`~autotts.sandbox.IsolationUnavailable`).

    ``stop_on_error``: debug mode — run in this process and re-raise the first controller
    error with its full traceback (for a debugger: ``pdb.post_mortem()``).

    ``canonicalize``: group mathematically equivalent answers before controllers see them
    (:mod:`autotts.envs.answer_groups`; replay environments only). Off by default, so published
    numbers stay exact.
    """
    start = time.perf_counter()
    configs = run_configs(controllers, betas, **grid)
    env_ids = resolve_ids([envs] if isinstance(envs, str) else list(envs), env_dir)
    env_dir = str(env_dir) if env_dir is not None else None
    env_options = {"canonicalize": True} if canonicalize else {}
    sandboxed = _sandboxed(configs, sandbox)
    if sandbox is False:  # the user's explicit choice: marked files run in process
        trust_marked_files(c.controller for c in configs if not c.in_memory)
    stores = [shared(env_id, env_dir, **env_options) for env_id in env_ids]
    check_configs(configs, stores, sandboxed)
    sizes = {env_id: len(shared(env_id, env_dir, **env_options)) for env_id in env_ids}
    workers = 1 if stop_on_error else workers or min(2, os.cpu_count() or 1)
    units: list[UnitResult] = []
    if sandboxed:
        from ..sandbox.sandboxed_evaluation import evaluate_in_sandbox

        envs_by_id = {env_id: shared(env_id, env_dir, **env_options) for env_id in env_ids}
        for env_id, env in envs_by_id.items():
            if not isinstance(env, EpisodeRunner):
                raise BadInput(
                    f"{env_id}: sandboxed evaluation runs on replay environments (single- or "
                    "cross-model); run live controllers with `autotts validate`"
                )
        units += evaluate_in_sandbox(sandboxed, envs_by_id, seeds, trace_seeds, workers, isolate)
    blocks_per_env = 1 if workers == 1 else 2 * workers
    jobs = [
        (
            config,
            env_id,
            env_dir,
            block,
            seeds,
            trace_seeds,
            time_limit_s,
            stop_on_error,
            env_options,
        )  # fmt: skip
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
            futures = {pool.submit(run_unit, *job): job for job in pooled}
            for future in as_completed(futures):
                unit = future.result()
                unit.config = futures[future][0]  # a controller object comes back a copy
                units.append(unit)
                if progress:
                    progress(len(units), total)
    units.sort(key=lambda u: (configs.index(u.config), env_ids.index(u.env_id), u.questions[0]))
    return EvaluationReport(
        summarise_units(units, configs, env_ids),
        units,
        seeds,
        time.perf_counter() - start,
        token_ceilings(stores, env_ids),
    )


def token_ceilings(envs, env_ids) -> dict[str, float]:
    """Per environment id, its :meth:`~autotts.envs.replay.ReplayEnvironment.token_ceiling` (the
    summaries' hypervolume reference), where its type defines one."""
    ceilings = {}
    for env, env_id in zip(envs, env_ids, strict=True):
        ceiling = getattr(env, "token_ceiling", None)
        if callable(ceiling):
            ceilings[env_id] = float(ceiling())
    return ceilings


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
    from ..loading.controller_files import is_marked_untrusted

    return [
        config
        for config in configs
        if not config.in_memory and is_marked_untrusted(config.controller)
    ]


__all__ = [
    "DEFAULT_BETAS",
    "EvaluationReport",
    "Row",
    "RunConfig",
    "UnitResult",
    "evaluate",
    "run_unit",
]
