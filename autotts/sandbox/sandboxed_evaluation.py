"""Evaluating and checking controller files in the sandbox, and the mark that asks for it.

``autotts export`` puts :data:`UNTRUSTED_MARK` at the top of an LLM-written candidate;
``autotts evaluate``/``compare``/``check`` run a file carrying it in the sandbox unless told
``--no-sandbox`` (and any file with ``--sandbox``). The sandboxed path gives the evaluator's
usual :class:`~autotts.results.evaluation_report.UnitResult` rows, so tables, plots and traces are the same.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..envs.replay import ReplayEnvironment
from ..loading.controller_files import (  # noqa: F401 (the mark's home is the loader; re-exported here)
    UNTRUSTED_MARK,
    ControllerLoadError,
    is_marked_untrusted,
    mark_untrusted,
    resolve_controller_path,
    split_selector,
    without_broken_classes,
)
from ..loading.run_configs import RunConfig
from ..results.evaluation_report import UnitResult
from ..results.traces import episode_record
from .runner import run_sandboxed


def evaluate_in_sandbox(
    configs: Sequence[RunConfig],
    envs: dict[str, ReplayEnvironment],
    seeds: int,
    trace_seeds: int,
    workers: int,
    isolate: bool = True,
) -> list[UnitResult]:
    """One :class:`UnitResult` per (configuration, environment): every configuration of the
    same controller file runs in one sandboxed evaluation per environment."""
    units: list[UnitResult] = []
    by_file: dict[str, list[RunConfig]] = {}
    for config in configs:
        by_file.setdefault(config.controller, []).append(config)
    for target, group in by_file.items():
        try:
            path = resolve_controller_path(target)
            source = path.read_text(encoding="utf-8")
            if (class_name := split_selector(target)[1]) is not None:
                source = without_broken_classes(source, class_name, path)
            if path.suffix != ".py":
                source, failure = (
                    None,
                    (
                        f"{path}: graph files do not run in the sandbox (their node controllers "
                        "are files you chose); evaluate an untrusted node controller file instead"
                    ),
                )
        except (ControllerLoadError, OSError, UnicodeDecodeError) as exc:
            source, failure = None, str(exc)
        for env_id, env in envs.items():
            start = time.perf_counter()
            outcome = None
            if source is not None:
                outcome = run_sandboxed(
                    source,
                    {env_id: env},
                    [(config.beta, dict(config.overrides)) for config in group],
                    seeds,
                    workers=workers,
                    trace_seeds=trace_seeds,
                    isolate=isolate,
                    max_branches=None,
                    class_name=split_selector(target)[1],
                )
                failure = None if outcome.ok else f"sandbox: {outcome.reason}"
            n = len(env)
            mine = [UnitResult.empty(c, env_id, range(n), seeds) for c in group]
            for unit in mine:
                unit.load_error = failure
            if failure is None:
                for index, _, question, result in outcome.results:
                    unit = mine[index]
                    unit.episodes += 1
                    correct = False
                    if result.error is not None:
                        unit.errors += 1
                        if unit.first_error is None:
                            unit.first_error = (
                                f"question {question}, seed {result.seed}: {result.error}"
                            )
                    else:
                        correct = env.is_correct(question, result.answer)
                    unit.record(question, result.seed, correct, result.tokens)
                    if result.actions is not None:
                        params = outcome.params[index]
                        unit.traces.append(episode_record(env, unit.config, params, result))
            for unit in mine:
                unit.seconds = (time.perf_counter() - start) / len(mine)
            units.extend(mine)
    return units
