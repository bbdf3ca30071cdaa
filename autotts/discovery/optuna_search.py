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

from ..errors import BadInput
from ..evaluation.evaluator import RunConfig, evaluate, run_unit
from ..results.run_directory import RunDirectory, RunError
from ..results.stats import mean_over_envs
from .family import Point
from .search_space import COMPOSABLE_PATH, cmc_point, normalize, suggest

WARM_START_BETAS = (0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass
class SearchSettings:
    """What the Optuna path searches on and how long."""

    search_envs: list[str]
    heldout_envs: list[str] = field(default_factory=list)
    seeds: int = 20  # seeds per question while searching
    final_seeds: int = 100  # seeds for the family's sweeps and the held-out judgement
    trials: int = 150
    time_budget_s: float | None = None  # a wall-time cap; None: the trial count alone decides
    sampler: str = "tpe"  # "tpe" or "nsga2"
    sampler_seed: int = 0
    storage: str | None = None
    study_name: str = "structural"
    # budget windows as shares of SC@64's mean tokens on the search set (``--target``): the
    # search is held below the largest, the family is chosen for its accuracy inside them
    targets: list[float] = field(default_factory=list)
    window_trials: int = 50  # per budget window, after the structural search (with targets)
    # fresh seeds on which the contenders are raced before the family is fitted (0: no race,
    # the family is fitted to the search's means with isotonic knobs)
    race_seeds: int = 0
    workers: int | None = None
    env_dir: str | None = None

    def __post_init__(self) -> None:
        """Refuse bad values before anything is created (the message names the setting)."""
        if self.sampler not in SAMPLERS:
            raise BadInput(f"unknown Optuna sampler {self.sampler!r}; use {' or '.join(SAMPLERS)}")
        if self.race_seeds < 0:
            raise BadInput(f"race_seeds must be 0 (no race) or more, got {self.race_seeds}")
        for name in ("seeds", "final_seeds", "trials", "window_trials"):
            if getattr(self, name) < 1:
                raise BadInput(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.storage is not None:
            check_storage(self.storage)
        for share in self.targets:
            if not 0 < share <= 1:
                raise BadInput(
                    f"--target {share:g}: a budget window is a share of SC@64's tokens in (0, 1]"
                )
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise BadInput("the search's time budget must be positive")
        if not self.search_envs:
            raise BadInput("at least one search environment is needed")


SAMPLERS = ("tpe", "nsga2")


def composable_config(params: dict, label: str = "candidate", beta=None) -> RunConfig:
    return RunConfig(
        str(COMPOSABLE_PATH), label=label, beta=beta, overrides=tuple(sorted(params.items()))
    )


def evaluate_point(
    params: dict, envs: list[str], seeds: int, *, env_dir=None, trace_seeds=1
) -> tuple[float, float, dict, list[dict]]:
    """Mean accuracy and tokens of one composable configuration over ``envs``, scored by the
    compiled policy; the traces of the first ``trace_seeds`` seeds come from the
    per-episode engine (which plays the same episodes)."""
    from .scoring import evaluate_composable

    config = composable_config(params)
    report = evaluate_composable([config], [params], envs, seeds, env_dir, intervals=False)
    per_env = {
        row.env_id: {"accuracy": row.accuracy, "tokens": row.tokens, "status": row.status}
        for row in report.rows
    }
    accuracy, tokens = mean_over_envs((r["accuracy"], r["tokens"]) for r in per_env.values())
    traces = []
    for row in report.rows if trace_seeds else ():
        questions = range(row.episodes // seeds)
        unit = run_unit(config, row.env_id, env_dir, questions, trace_seeds, trace_seeds)
        traces += unit.traces
    return accuracy, tokens, per_env, traces


def check_storage(url: str) -> None:
    """Refuse a storage URL SQLAlchemy cannot parse or whose database driver is missing (the
    message says what to install), before a run directory exists."""
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        sqlalchemy.create_engine(url).dispose()  # parses the URL, imports the driver
    except (ArgumentError, NoSuchModuleError) as exc:
        raise BadInput(f"--storage {url}: not a database URL SQLAlchemy knows ({exc})") from None
    except ImportError as exc:
        hint = " (PostgreSQL: pip install 'psycopg[binary]')" if "postgres" in url else ""
        raise BadInput(f"--storage {url}: its database driver is missing: {exc}{hint}") from None


def storage_url(run: RunDirectory, settings: SearchSettings) -> str:
    return settings.storage or f"sqlite:///{(run.path / 'optuna.db').resolve()}"


def open_study(run: RunDirectory, settings: SearchSettings, directions: list[str]):
    """The run's study (created, or loaded when it exists). Trials over a token cap mark
    themselves infeasible (``trial.set_constraint``); both samplers honour that."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if settings.sampler == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=settings.sampler_seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=settings.sampler_seed, n_startup_trials=12)
    return optuna.create_study(
        study_name=settings.study_name,
        storage=storage_url(run, settings),
        directions=directions,
        sampler=sampler,
        load_if_exists=True,
    )


def _reconcile(
    study, run: RunDirectory, recorded: dict[int, dict], shared: bool, offset: int = 0
) -> None:
    """Settle trials this run left RUNNING when it was killed (see the module docstring).
    In a shared study the RUNNING trials of other workers are theirs, still in progress:
    every trial records which run asked for it (user attribute ``run``)."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("run")  # None: asked before owners were recorded, or
        if owner != _owner(run) and (shared or owner is not None):  # another worker's, just asked
            continue
        if trial.number in recorded:
            study.tell(trial.number, recorded[trial.number]["values"])
        else:
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params)
            shutil.rmtree(run.candidate_dir(offset + trial.number), ignore_errors=True)


def _check_consistent(study, run, settings, recorded: dict[int, dict]) -> None:
    """Refuse to resume when the study and the history disagree about finished trials
    (one of the two files was deleted, emptied or replaced): resuming would re-run or
    double-count trials."""
    from optuna.trial import TrialState

    finished = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    lost_study = sorted(set(recorded) - finished - _running(study))
    if lost_study:
        raise RunError(
            f"{storage_url(run, settings)}: the Optuna study lacks {len(lost_study)} trial(s) "
            f"that {run.path / 'history.jsonl'} records as finished (first: {lost_study[0]}); "
            "was optuna.db deleted or replaced? Restore it, or start a new run elsewhere"
        )
    if settings.storage is None:  # a run-local study holds this run's trials only
        lost_history = sorted(finished - set(recorded))
        if lost_history:
            raise RunError(
                f"{run.path / 'history.jsonl'}: {len(lost_history)} finished trial(s) of the "
                f"Optuna study are not recorded (first: {lost_history[0]}); was history.jsonl "
                "truncated or replaced? Restore it, or start a new run elsewhere"
            )


def _running(study) -> set[int]:
    from optuna.trial import TrialState

    return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}


def sc64_tokens(run: RunDirectory, settings: SearchSettings) -> float:
    """SC@64's mean tokens on the search set at the search's seeds, measured once per run
    (recorded as the ``baseline`` stage)."""
    done = run.stage_done("baseline")
    if done is not None:
        return done["sc64_tokens"]
    report = evaluate(
        [RunConfig("sc", overrides=(("n", 64),))],
        settings.search_envs,
        seeds=settings.seeds,
        workers=settings.workers,
        env_dir=settings.env_dir,
        trace_seeds=0,
    )
    tokens = mean_over_envs((r.accuracy, r.tokens) for r in report.rows)[1]
    run.finish_stage("baseline", sc64_tokens=tokens)
    return tokens


def window_caps(run: RunDirectory, settings: SearchSettings) -> list[float]:
    """The budget windows in tokens (empty without ``--target``)."""
    if not settings.targets:
        return []
    tokens = sc64_tokens(run, settings)
    return [share * tokens for share in sorted(settings.targets)]


def token_cap(run: RunDirectory, settings: SearchSettings) -> float | None:
    """The largest budget window in tokens, or None."""
    caps = window_caps(run, settings)
    return caps[-1] if caps else None


def search_points(run: RunDirectory, stage: str = "search") -> list[Point]:
    """Every recorded round of a search stage as a :class:`Point`, labelled by its candidate
    (unique in the run: ``RUN/candidates/NNNN``; trial numbers restart in every study)."""
    return [
        Point(normalize(r["params"]), r["accuracy"], r["tokens"], f"candidate {r['candidate']}")
        for r in run.rounds()
        if r.get("stage") == stage
    ]


def _owner(run: RunDirectory) -> str:
    return str(run.path.resolve())


def _describe(trial, run: RunDirectory, stage: str, fields: dict, number: int) -> None:
    """User attributes that make ``optuna-dashboard sqlite:///RUN/optuna.db`` useful: where
    the trial's candidate lives (controller parameters, result, traces) and its numbers."""
    trial.set_user_attr("candidate_dir", str(run.candidate_dir(number).resolve()))
    trial.set_user_attr("stage", stage)
    for key in ("accuracy", "tokens"):
        if isinstance(fields.get(key), int | float):
            trial.set_user_attr(key, float(fields[key]))


def run_trials(
    run: RunDirectory,
    settings: SearchSettings,
    study,
    stage: str,
    trial_fn: Callable,
    warm_start: list[dict],
    progress: Callable | None,
    trials: int | None = None,
    offset: int = 0,
) -> None:
    """Ask → evaluate → record → tell until ``trials`` (default: the settings' count) or the
    time budget is reached. ``trial_fn(trial)`` returns ``(values, record_fields, traces)``.
    Trial ``n`` of the study is candidate ``offset + n`` of the run (several studies, one
    run directory)."""
    trials = settings.trials if trials is None else trials
    recorded = {r["trial"]: r for r in run.rounds() if r.get("stage") == stage}
    _check_consistent(study, run, settings, recorded)
    _reconcile(study, run, recorded, shared=settings.storage is not None, offset=offset)
    if not study.trials:  # a shared study: only its first worker warm-starts it
        for params in warm_start:
            study.enqueue_trial(params, skip_if_exists=True)
    spent = sum(r.get("seconds", 0.0) for r in recorded.values())
    done = len(recorded)
    if progress:
        progress(done, trials, None)
    cap = settings.time_budget_s if settings.time_budget_s is not None else float("inf")
    while done < trials and spent < cap:
        trial = study.ask()
        trial.set_user_attr("run", _owner(run))
        start = time.perf_counter()
        values, fields, traces = trial_fn(trial)
        seconds = time.perf_counter() - start
        record = {
            "event": "round",
            "stage": stage,
            "trial": trial.number,
            "candidate": f"{offset + trial.number:04d}",
            "values": values,
            **fields,
            "seconds": seconds,
            "time": time.time(),
        }
        number = offset + trial.number
        run.write_candidate(number, params=fields.get("params"), result=fields, traces=traces)
        run.append(record)
        _describe(trial, run, stage, fields, number)
        study.tell(trial, values)
        spent += seconds
        done += 1
        if progress:
            progress(done, trials, Point({}, fields["accuracy"], fields["tokens"]))


def structural_search(
    run: RunDirectory,
    settings: SearchSettings,
    progress: Callable[[int, int, Point | None], None] | None = None,
) -> list[Point]:
    """Run (or continue) the multi-objective structural search; return every recorded point."""

    cap = token_cap(run, settings)
    study = open_study(run, settings, ["maximize", "minimize"])
    warm = [cmc_point(beta) for beta in WARM_START_BETAS]
    run_trials(run, settings, study, "search", point_trial(settings, cap), warm, progress)
    return search_points(run)


def point_trial(settings: SearchSettings, cap: float | None, tokens_too: bool = True) -> Callable:
    """A trial function evaluating one sampled point of the space on the search set: values
    ``[accuracy, tokens]`` (or ``[accuracy]``); with a token ``cap`` the trial's ``tokens``
    constraint (``tokens / cap − 1``, feasible at ≤ 0) tells the sampler whether it stayed
    below."""

    def trial_fn(trial):
        params = suggest(trial)
        accuracy, tokens, per_env, traces = evaluate_point(
            params,
            settings.search_envs,
            settings.seeds,
            env_dir=settings.env_dir,
        )
        fields = {"params": params, "accuracy": accuracy, "tokens": tokens, "per_env": per_env}
        if cap is not None:
            trial.set_constraint("tokens", tokens / cap - 1.0)
        return ([accuracy, tokens] if tokens_too else [accuracy]), fields, traces

    return trial_fn
