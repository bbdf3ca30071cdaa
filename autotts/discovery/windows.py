"""Per-window searches (``--target``): after the structural search, one single-objective study
per budget window maximises search-set accuracy with the window as a hard cap (an Optuna
constraint), warm-started from the structural search's best points inside it. Their points
join the structural ones when the family is fitted, so its structure and front are chosen
with points found for exactly the budgets asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..results.run_directory import RunDirectory
from .family import Point
from .optuna_search import (
    SearchSettings,
    open_study,
    point_trial,
    run_trials,
    search_points,
    window_caps,
)

OFFSET = 10_000  # window k's trial n is candidate k·OFFSET + n of the run
WARM_POINTS = 3  # best structural points inside a window that warm-start its study


def window_stage(share: float) -> str:
    return f"window-{share:g}"


def window_searches(
    run: RunDirectory, settings: SearchSettings, progress: Callable | None = None
) -> None:
    """Run (or continue) one study per budget window (``settings.window_trials`` each)."""
    caps = window_caps(run, settings)
    structural = search_points(run)
    for k, (share, cap) in enumerate(zip(sorted(settings.targets), caps, strict=True), 1):
        stage = window_stage(share)
        inside = sorted((p for p in structural if p.tokens <= cap), key=lambda p: -p.accuracy)
        study = open_study(
            run, replace(settings, study_name=f"{settings.study_name}-{stage}"), ["maximize"]
        )
        warm = [p.params for p in inside[:WARM_POINTS]]
        trial_fn = point_trial(settings, cap, tokens_too=False)
        run_trials(run, settings, study, stage, trial_fn, warm, progress,
                   trials=settings.window_trials, offset=k * OFFSET)  # fmt: skip


def all_points(run: RunDirectory, settings: SearchSettings) -> list[Point]:
    """The structural search's points and every window study's."""
    points = search_points(run)
    for share in settings.targets:
        points += search_points(run, window_stage(share))
    return points


__all__ = ["all_points", "window_searches", "window_stage"]
