"""The Optuna discovery path, stage by stage, each stage recorded so a killed run resumes:

1. ``search``  — structural multi-objective search on the search environments;
   (with ``--target``, then one study per budget window: ``window-<share>``);
2. ``race``    — re-score the contenders on fresh seeds (:mod:`.racing`; with race seeds);
3. ``family``  — compress the (raced) Pareto points into a β-family, sweep it on the search
   set;
4. ``heldout`` — judge the family on the held-out environments next to SC@64 and CMC.

The family is chosen on the search set only; held-out numbers never feed back into it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from ..evaluation.evaluator import DEFAULT_BETAS, EvaluationReport, RunConfig, evaluate
from ..results.run_directory import RunDirectory, RunError
from ..results.stats import estimate, mean_curve
from .family import Family, anchor_family, family_source, fit_family, is_family_file
from .optuna_search import SearchSettings, structural_search, window_caps
from .racing import race, raced_points
from .search_space import cmc_point
from .tuning import best_tuned_family, tune_schedule
from .verdict import judge, outcome_tables
from .windows import all_points, window_searches

FAMILY_FILE = "family/controller.py"


def settings_from_config(config: dict) -> SearchSettings:
    """The search settings recorded in a run's ``config.json`` (bad ones raise ValueError)."""
    known = SearchSettings.__dataclass_fields__
    try:
        return SearchSettings(**{k: v for k, v in config.get("search", {}).items() if k in known})
    except TypeError as exc:
        raise RunError(f"config.json: the run's search settings are incomplete ({exc})") from None


def config_for(settings: SearchSettings, strategy: str = "optuna", **extra) -> dict:
    return {"strategy": strategy, "search": asdict(settings), **extra}


def provenance_header(run: RunDirectory, settings: SearchSettings, family: Family) -> str:
    """The family file's header: the export header plus the Pareto anchors it was fitted to."""
    from .export import provenance_header as header

    anchors = "; ".join(
        f"{p.label}: {p.accuracy:.2f}% @ {p.tokens / 1000:.1f}k" for p in family.anchors
    )
    return header(
        run,
        "β-family",
        [
            f"{settings.seeds} seeds/question while searching",
            f"Pareto anchors (search set means): {anchors}",
        ],
    )


def _curve(report, name: str, env_ids: list[str]) -> list[dict]:
    """Per-setting mean accuracy/tokens over ``env_ids`` (plus per-environment detail)."""
    return mean_curve(r for r in report.rows if r.controller == name and r.env_id in env_ids)


def curves_with_baselines(
    path: str | None, name: str, envs: list[str], settings: SearchSettings, progress=None
) -> dict:
    """A β-family's curve (``path``: a composable family file; None: baselines only) next to
    CMC's curve and SC@64, means over ``envs``. The family and CMC (the composable controller
    at CMC's point, equal to ``cmc`` episode by episode) are scored by the compiled policy.
    ``progress(done, total)`` counts the environments scored, then the units evaluated."""
    from ..loading.controller_files import load_controller
    from .scoring import evaluate_composable

    family = [RunConfig(path, label=name, beta=b) for b in DEFAULT_BETAS] if path else []
    cmc = [RunConfig("cmc", beta=b) for b in DEFAULT_BETAS]
    configs = [*family, *cmc, RunConfig("sc", overrides=(("n", 64),))]
    fast, points = cmc, [cmc_point(b) for b in DEFAULT_BETAS]
    if path and is_family_file(path):
        controller = load_controller(path)
        fast, points = family + cmc, [controller.params(b) for b in DEFAULT_BETAS] + points
    seeds, env_dir = settings.final_seeds, settings.env_dir
    vectorised = evaluate_composable(fast, points, envs, seeds, env_dir=env_dir, progress=progress)
    rest = [c for c in configs if c not in fast]
    slow = evaluate(
        rest, envs, seeds=seeds, workers=settings.workers, env_dir=env_dir, trace_seeds=0,
        progress=progress and (lambda done, total: progress(len(envs) + done, len(envs) + total)),
    )  # fmt: skip
    report = EvaluationReport(
        vectorised.rows + slow.rows,
        vectorised.units + slow.units,
        seeds,
        vectorised.seconds + slow.seconds,
        {**vectorised.token_ceilings, **slow.token_ceilings},
    )

    def tables(config):
        rows = [r for r in report.rows if r.config == config]
        return outcome_tables(report, sorted(rows, key=lambda r: envs.index(r.env_id)))

    outcomes = {
        "winner": [tables(c) for c in family],
        "cmc": [tables(c) for c in cmc],
        "sc64": tables(configs[-1]),
    }
    curves = {
        "winner": _curve(report, name, envs) if path else [],
        "cmc": _curve(report, "cmc", envs),
        "sc64": _curve(report, "sc", envs)[:1],
    }
    for key, curve in curves.items():
        point_tables = outcomes[key] if key != "sc64" else [outcomes[key]]
        for point, (accuracy, tokens) in zip(curve, point_tables, strict=True):
            with_intervals(point, accuracy, tokens)
    return {
        "envs": envs,
        "winner": curves["winner"],
        "cmc": curves["cmc"],
        "sc64": curves["sc64"][0],
        "_tables": outcomes,  # per-episode outcomes for the verdict's intervals (never written)
    }


def with_intervals(point: dict, accuracy: list, tokens: list) -> dict:
    """Add ``accuracy_se``, ``accuracy_interval`` and ``tokens_interval`` (bootstrap over
    questions and seeds, environments averaged) to a curve point."""
    acc, tok = estimate(accuracy), estimate(tokens)
    point["accuracy_se"] = acc.se
    point["accuracy_interval"] = [acc.low, acc.high]
    point["tokens_interval"] = [tok.low, tok.high]
    return point


def run_family_stage(
    run: RunDirectory, settings: SearchSettings, family: Family, name: str, progress=None
) -> dict:
    """Write the β-family's controller and sweep it on the search set."""
    from ..utils.atomic_files import atomic_write_text

    path = run.path / FAMILY_FILE
    source = family_source(family, name, provenance_header(run, settings, family))
    atomic_write_text(path, source)
    result = {
        "name": name,
        "fixed": family.fixed,
        "knots": family.knots,
        "switches": family.switches,
        "anchors": [asdict(p) for p in family.anchors],
        **curves_with_baselines(str(path), name, settings.search_envs, settings, progress),
    }
    return write_judgement(run, "search.json", result)


def judge_heldout(run: RunDirectory, settings: SearchSettings, name: str, progress=None) -> dict:
    """Family vs SC@64 and CMC on the held-out environments (means over environments)."""
    result = curves_with_baselines(
        str(run.path / FAMILY_FILE), name, settings.heldout_envs, settings, progress
    )
    return write_judgement(run, "heldout.json", result)


def write_judgement(run: RunDirectory, relative: str, result: dict) -> dict:
    """Add the acceptance verdict to a winner-vs-baselines result and write it."""
    tables = result.pop("_tables", None)
    result["verdict"] = judge(result["winner"], result["cmc"], result["sc64"], tables)
    run.write_json(relative, result)
    return result


def race_stage(run: RunDirectory, settings: SearchSettings, progress=None) -> list:
    """Race every recorded point's contenders on fresh seeds (see :mod:`.racing`)."""
    return race(
        run, all_points(run, settings), settings.search_envs, window_caps(run, settings),
        first_seed=settings.seeds, seeds=settings.race_seeds, env_dir=settings.env_dir,
        shares=sorted(settings.targets), progress=progress,
    )  # fmt: skip


def run_optuna_discovery(
    run: RunDirectory,
    settings: SearchSettings,
    name: str = "discovered",
    progress: Callable | None = None,
    stage_callback: Callable[[str], None] | None = None,
) -> dict:
    """Run or resume every stage; returns the held-out judgement (or {} without held-out)."""

    def note(stage: str) -> None:
        if stage_callback:
            stage_callback(stage)

    def counted(done: int, total: int) -> None:  # a later stage's counts, on the same bar
        if progress:
            progress(done, total, None)

    tune = run.config.get("strategy") == "tune"
    if not run.stage_done("search"):
        note("search")
        if tune:
            tune_schedule(run, settings, progress=progress)
        else:
            structural_search(run, settings, progress)
        run.finish_stage("search")
    if settings.targets and not tune and not run.stage_done("windows"):
        note("windows")
        window_searches(run, settings, progress)
        run.finish_stage("windows")
    raced = settings.race_seeds and not tune
    if raced and not run.stage_done("race"):
        note("race")
        race_stage(run, settings, counted)
        run.finish_stage("race")
    if not run.stage_done("family"):
        note("family")
        if tune:
            family = best_tuned_family(run)
        elif raced:
            family = anchor_family(raced_points(run), window_caps(run, settings))
        else:
            family = fit_family(all_points(run, settings), windows=window_caps(run, settings))
        run_family_stage(run, settings, family, name, counted)
        run.finish_stage("family")
    if settings.heldout_envs and not run.stage_done("heldout"):
        note("heldout")
        judge_heldout(run, settings, name, counted)
        run.finish_stage("heldout")
    return run.read_json("heldout.json") if settings.heldout_envs else {}
