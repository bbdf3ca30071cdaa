"""Optuna search over the composable controller space (needs no LLM).

``structural_search`` runs a multi-objective study (accuracy ↑, tokens ↓) with TPE or NSGA-II
over structure and numbers, warm-started with CMC points. The study lives in a real database
(``sqlite:///RUN/optuna.db`` by default, any SQLAlchemy URL otherwise), so several workers on
several machines can share it: start ``autotts discover --storage postgresql://…
--study NAME`` on each, with the same search settings.

Every trial is one round of the run: its parameters, metrics and traces are recorded in the
run directory *before* the trial is told to Optuna. On resume, a trial that was running when
the process died is either told its recorded result, or (never recorded) failed and enqueued
again, so no round is lost or counted twice.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..evaluate import RunConfig, evaluate
from .family import Point
from .rundir import RunDirectory
from .space import COMPOSABLE_PATH, cmc_point, suggest

WARM_START_BETAS = (0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass
class SearchSettings:
    """What the Optuna path searches on and how long."""

    search_envs: list[str]
    heldout_envs: list[str] = field(default_factory=list)
    seeds: int = 20  # seeds per question while searching
    final_seeds: int = 100  # seeds for the family's sweeps and the held-out judgement
    trials: int = 150
    time_budget_s: float = 480.0
    sampler: str = "tpe"  # "tpe" or "nsga2"
    sampler_seed: int = 0
    storage: str | None = None
    study_name: str = "structural"
    workers: int | None = None
    env_dir: str | None = None


def composable_config(params: dict, label: str = "candidate", beta=None) -> RunConfig:
    return RunConfig(
        str(COMPOSABLE_PATH), label=label, beta=beta, overrides=tuple(sorted(params.items()))
    )


def evaluate_point(
    params: dict, envs: list[str], seeds: int, *, workers=None, env_dir=None, trace_seeds=1
) -> tuple[float, float, dict, list[dict]]:
    """Mean accuracy and tokens of one composable configuration over ``envs``."""
    report = evaluate(
        [composable_config(params)],
        envs,
        seeds=seeds,
        workers=workers,
        env_dir=env_dir,
        trace_seeds=trace_seeds,
    )
    per_env = {
        row.env_id: {"accuracy": row.accuracy, "tokens": row.tokens, "status": row.status}
        for row in report.rows
    }
    accuracy = sum(r["accuracy"] for r in per_env.values()) / len(per_env)
    tokens = sum(r["tokens"] for r in per_env.values()) / len(per_env)
    traces = [t for unit in report.units for t in unit.traces]
    return accuracy, tokens, per_env, traces


def storage_url(run: RunDirectory, settings: SearchSettings) -> str:
    return settings.storage or f"sqlite:///{(run.path / 'optuna.db').resolve()}"


def open_study(run: RunDirectory, settings: SearchSettings):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if settings.sampler == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=settings.sampler_seed)
    elif settings.sampler == "tpe":
        sampler = optuna.samplers.TPESampler(seed=settings.sampler_seed, n_startup_trials=12)
    else:
        raise ValueError(f"unknown sampler {settings.sampler!r}; use 'tpe' or 'nsga2'")
    return optuna.create_study(
        study_name=settings.study_name,
        storage=storage_url(run, settings),
        directions=["maximize", "minimize"],
        sampler=sampler,
        load_if_exists=True,
    )


def _reconcile(study, run: RunDirectory, recorded: dict[int, dict]) -> None:
    """Settle trials left RUNNING by a killed process (see the module docstring)."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in recorded:
            r = recorded[trial.number]
            study.tell(trial.number, [r["accuracy"], r["tokens"]])
        else:
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params)
            shutil.rmtree(run.candidate_dir(trial.number), ignore_errors=True)


def search_points(run: RunDirectory) -> list[Point]:
    """Every recorded search round of a run as a :class:`Point`."""
    return [
        Point(r["params"], r["accuracy"], r["tokens"], f"trial {r['trial']}")
        for r in run.rounds()
        if r.get("stage") == "search"
    ]


def structural_search(
    run: RunDirectory,
    settings: SearchSettings,
    progress: Callable[[int, int, Point | None], None] | None = None,
) -> list[Point]:
    """Run (or continue) the multi-objective search; return every recorded point."""
    study = open_study(run, settings)
    recorded = {r["trial"]: r for r in run.rounds() if r.get("stage") == "search"}
    _reconcile(study, run, recorded)
    if not study.trials:
        for beta in WARM_START_BETAS:
            study.enqueue_trial(cmc_point(beta))
    spent = sum(r.get("seconds", 0.0) for r in recorded.values())
    done = len(recorded)
    best: Point | None = None
    if progress:
        progress(done, settings.trials, best)
    while done < settings.trials and spent < settings.time_budget_s:
        trial = study.ask()
        start = time.perf_counter()
        params = suggest(trial)
        accuracy, tokens, per_env, traces = evaluate_point(
            params,
            settings.search_envs,
            settings.seeds,
            workers=settings.workers,
            env_dir=settings.env_dir,
        )
        seconds = time.perf_counter() - start
        run.write_candidate(
            trial.number,
            params=params,
            result={"accuracy": accuracy, "tokens": tokens, "per_env": per_env},
            traces=traces,
        )
        run.append(
            {
                "event": "round",
                "stage": "search",
                "trial": trial.number,
                "candidate": f"{trial.number:04d}",
                "params": params,
                "accuracy": accuracy,
                "tokens": tokens,
                "seconds": seconds,
                "time": time.time(),
            }
        )
        study.tell(trial, [accuracy, tokens])
        spent += seconds
        done += 1
        point = Point(params, accuracy, tokens, f"trial {trial.number}")
        if best is None or accuracy / tokens**0.1 > best.accuracy / best.tokens**0.1:
            best = point
        if progress:
            progress(done, settings.trials, point)
    return search_points(run)
