"""Tuning the β-schedule constants of an existing family (CMC by default) with Optuna: each
numeric knob's β=0 and β=1 values scaled by a sampled factor, each trial scored by the area
under its accuracy-vs-log-tokens curve (``autotts discover --strategy tune``)."""

from __future__ import annotations

from collections.abc import Callable

from ..results.run_directory import RunDirectory
from ..results.stats import mean_curve
from .composable import ComposableController
from .family import Family, curve_score
from .optuna_search import SearchSettings, composable_config, open_study, run_trials
from .scoring import evaluate_composable
from .search_space import RANGES

TUNE_BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)
TUNE_SCALE = (0.5, 1.6)  # each knob's endpoint may move to 0.5×–1.6× its base value


def tuned_family(base: Family, trial) -> Family:
    """``base`` with each numeric knob's β=0 and β=1 values scaled by a sampled factor."""
    knots = {}
    for key, pts in base.knots.items():
        (b0, v0), (b1, v1) = pts[0], pts[-1]
        low, high, integer = RANGES[key]
        scaled = []
        for end, beta, value in (("lo", b0, v0), ("hi", b1, v1)):
            factor = trial.suggest_float(f"{key}_{end}", *TUNE_SCALE)
            v = min(high, max(low, value * factor))
            scaled.append((beta, round(v, 4)))
        knots[key] = scaled
    return Family(dict(base.fixed), knots)


def family_curve(
    family: Family, envs: list[str], seeds: int, betas=TUNE_BETAS, *, env_dir=None
) -> list[dict]:
    """Mean accuracy / tokens of a family at each β (the compiled policy)."""
    points = [family.params(b) for b in betas]
    configs = [
        composable_config(point, label=f"b{b}") for b, point in zip(betas, points, strict=True)
    ]
    report = evaluate_composable(configs, points, envs, seeds, env_dir=env_dir)
    points = mean_curve(report.rows)
    return [
        {"beta": beta, "accuracy": p["accuracy"], "tokens": p["tokens"]}
        for beta, p in zip(betas, points, strict=True)
    ]


def tune_schedule(
    run: RunDirectory,
    settings: SearchSettings,
    base: Family | None = None,
    progress: Callable | None = None,
) -> Family:
    """Tune the schedule constants of ``base`` (CMC) for the area under its curve; return the
    best family found (the base itself is the first trial)."""
    policy = ComposableController  # its default schedule: CMC's
    base = base or Family(dict(policy.FIXED), {k: list(v) for k, v in policy.KNOTS.items()})

    def trial_fn(trial):
        family = tuned_family(base, trial)
        curve = family_curve(
            family,
            settings.search_envs,
            settings.seeds,
            env_dir=settings.env_dir,
        )
        score = curve_score(curve)
        fields = {
            "params": {"fixed": family.fixed, "knots": family.knots},
            "curve": curve,
            "score": score,
            "accuracy": sum(p["accuracy"] for p in curve) / len(curve),
            "tokens": sum(p["tokens"] for p in curve) / len(curve),
        }
        return [score], fields, []

    study = open_study(run, settings, ["maximize"])
    identity = {f"{k}_{end}": 1.0 for k in base.knots for end in ("lo", "hi")}
    run_trials(run, settings, study, "tune", trial_fn, [identity], progress)
    return best_tuned_family(run)


def best_tuned_family(run: RunDirectory) -> Family:
    """The recorded tuning trial with the best score, as a family."""
    rounds = [r for r in run.rounds() if r.get("stage") == "tune"]
    if not rounds:
        raise ValueError(f"{run.path}: no tuning trial was recorded")
    best = max(rounds, key=lambda r: r["score"])["params"]
    return Family(best["fixed"], {k: [tuple(p) for p in v] for k, v in best["knots"].items()})


__all__ = ["best_tuned_family", "family_curve", "tune_schedule", "tuned_family"]
