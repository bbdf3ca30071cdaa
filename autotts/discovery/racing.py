"""Racing against the winner's curse: the search's contenders, scored again on fresh seeds.

A search ranks hundreds of points by their means over a few seeds; the best of them are partly
best by luck, so their means overstate what they do (the winner's curse), and choosing among
them by those means picks luck as well as skill. The race (stage ``race``):

1. takes the contenders: every point within ``BAND`` accuracy points of the Pareto front of
   all recorded points (the front included), and per budget window its ``PER_WINDOW`` most
   accurate points (at most ``LIMIT`` in all, those nearest the front first);
2. scores each again on ``race_seeds`` seeds the search never played (seeds ``seeds`` to
   ``seeds + race_seeds − 1``) on the search environments, with the compiled policy;
3. records both means per contender in ``race.json``, with how much the search's means of the
   front overstated the fresh ones, and per window the raced best and every contender
   statistically tied with it (paired 95 % interval of the difference containing zero):
   the uncertainty of the selection; and what the selection is worth on questions it did
   not see (``FOLDS``-fold cross-validation over the search questions: the fresh seeds
   remove the seeds' luck, not the questions').

The family is fitted to the fresh means. Held-out data plays no part.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..envs.registry import shared
from ..results.run_directory import RunDirectory
from ..results.stats import estimate, paired_difference
from .family import Point, pareto_front
from .scoring import score, vector_data

BAND = 0.5  # accuracy points below the front that still make a contender
PER_WINDOW = 12
LIMIT = 120
FOLDS = 5  # folds of the search questions for the selection's cross-validated accuracy


def contenders(points: list[Point], caps: list[float]) -> list[Point]:
    """The points worth racing (see the module docstring), cheapest first."""
    ordered = sorted(points, key=lambda p: (p.tokens, -p.accuracy))
    slack, best = {}, -np.inf
    for p in ordered:  # how far each point lies below the front at its cost
        best = max(best, p.accuracy)
        slack[id(p)] = best - p.accuracy
    chosen = {id(p): p for p in sorted(ordered, key=lambda p: slack[id(p)])[:LIMIT]
              if slack[id(p)] <= BAND}  # fmt: skip
    for cap in caps:
        inside = sorted((p for p in points if p.tokens <= cap), key=lambda p: -p.accuracy)
        chosen.update((id(p), p) for p in inside[:PER_WINDOW])
    unique: dict[str, Point] = {}
    for p in sorted(chosen.values(), key=lambda p: slack[id(p)]):
        unique.setdefault(repr(sorted(p.params.items())), p)
    return sorted(list(unique.values())[: LIMIT + PER_WINDOW * len(caps)], key=lambda p: p.tokens)


def race(
    run: RunDirectory, points: list[Point], envs: list[str], caps: list[float], *,
    first_seed: int, seeds: int, env_dir=None, shares: list[float] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Point]:  # fmt: skip
    """Race ``points``' contenders (or read the recorded race); returns them with their fresh
    means (label, parameters and search means kept in ``race.json``). ``progress(done,
    total)`` is called as the environments are scored."""
    if run.stage_done("race"):
        return raced_points(run)
    racing = contenders(points, caps)
    params = [p.params for p in racing]
    correct, tokens = [], []  # per environment: (contenders, questions, seeds)
    for done, env_id in enumerate(envs):
        if progress:
            progress(done, len(envs))
        data = vector_data(shared(env_id, None if env_dir is None else str(env_dir)))
        _, c, t = score(data, params, seeds, first_seed=first_seed)
        correct.append(100.0 * c)
        tokens.append(t.astype(float))
    if progress:
        progress(len(envs), len(envs))
    env_accuracy = np.array([c.mean(axis=(1, 2)) for c in correct])  # (envs, contenders)
    env_tokens = np.array([t.mean(axis=(1, 2)) for t in tokens])
    accuracy, spent = env_accuracy.mean(axis=0), env_tokens.mean(axis=0)
    entries = [
        {
            "label": p.label,
            "params": p.params,
            "search": {"accuracy": p.accuracy, "tokens": p.tokens},
            "raced": {"accuracy": float(accuracy[k]), "tokens": float(spent[k])},
            "per_env": {
                env: {"accuracy": float(env_accuracy[e, k]), "tokens": float(env_tokens[e, k])}
                for e, env in enumerate(envs)
            },
        }
        for k, p in enumerate(racing)
    ]
    front = pareto_front(racing)
    fresh = {id(p): a for p, a in zip(racing, accuracy, strict=True)}
    overstated = [p.accuracy - fresh[id(p)] for p in front]
    result = {
        "seeds": [first_seed, first_seed + seeds - 1],
        "envs": envs,
        "contenders": entries,
        "winners_curse": {
            "front_points": len(front),
            "mean_overstatement": float(np.mean(overstated)),
            "max_overstatement": float(np.max(overstated)),
        },
        "windows": [
            {
                "share": share,
                **_window(cap, entries, correct),
                **_cross_validated(cap, correct, tokens),
            }
            for share, cap in zip(shares or [None] * len(caps), caps, strict=True)
        ],
    }
    run.write_json("race.json", result)
    return _raced(result)


def _cross_validated(cap: float, correct: list[np.ndarray], tokens: list[np.ndarray]) -> dict:
    """What choosing the raced best inside the window is worth on questions it was not chosen
    on: over ``FOLDS`` folds of every environment's questions (question ``q`` in fold
    ``q % FOLDS``), the contender most accurate inside the window on the other folds scores
    the fold left out; the estimate (with its bootstrap interval) is over every question so
    scored. None when some fold has no contender inside the window."""
    chosen = []
    for fold in range(FOLDS):
        train_accuracy, train_tokens = [], []
        for c, t in zip(correct, tokens, strict=True):
            kept = np.arange(c.shape[1]) % FOLDS != fold
            train_accuracy.append(c[:, kept].mean(axis=(1, 2)))
            train_tokens.append(t[:, kept].mean(axis=(1, 2)))
        accuracy, spent = np.mean(train_accuracy, axis=0), np.mean(train_tokens, axis=0)
        inside = np.flatnonzero(spent <= cap)
        if not len(inside):
            return {"cross_validated_accuracy": None}
        chosen.append(inside[np.argmax(accuracy[inside])])
    scored = []  # per environment: each question's seeds, played by the choice made without it
    for c in correct:
        questions = np.arange(c.shape[1])
        scored.append(c[np.array(chosen)[questions % FOLDS], questions])
    validated = estimate(scored)
    return {
        "cross_validated_accuracy": validated.mean,
        "cross_validated_interval": [validated.low, validated.high],
    }


def _window(cap: float, entries: list[dict], correct: list[np.ndarray]) -> dict:
    """The raced best inside a window, its interval, and the contenders tied with it."""
    inside = [i for i, e in enumerate(entries) if e["raced"]["tokens"] <= cap]
    if not inside:
        return {"cap": cap, "best": None, "tied": []}
    best = max(inside, key=lambda i: entries[i]["raced"]["accuracy"])
    tables = [c[best] for c in correct]
    own = estimate(tables)
    tied = []
    for i in inside:
        if i != best:
            gap = paired_difference(tables, [c[i] for c in correct])
            if gap.low <= 0.0:
                tied.append(entries[i]["label"])
    return {
        "cap": cap,
        "best": entries[best]["label"],
        "accuracy": own.mean,
        "accuracy_interval": [own.low, own.high],
        "tied": tied,
        "contenders_inside": len(inside),
    }


def raced_points(run: RunDirectory) -> list[Point]:
    """The contenders of the run's finished race, with their fresh means."""
    return _raced(run.read_json("race.json"))


def _raced(result: dict) -> list[Point]:
    return [
        Point(
            e["params"],
            e["raced"]["accuracy"],
            e["raced"]["tokens"],
            e["label"],
            tuple(e["per_env"][env]["tokens"] for env in result["envs"]),
        )
        for e in result["contenders"]
    ]


def race_lines(result: dict) -> list[str]:
    """What the race found, in words (for the run's report and console)."""
    curse = result["winners_curse"]
    lines = [
        f"Race: {len(result['contenders'])} contenders re-scored on seeds "
        f"{result['seeds'][0]}–{result['seeds'][1]}; the search's means of the "
        f"{curse['front_points']} front points overstated the fresh ones by "
        f"{curse['mean_overstatement']:+.2f} points on average (at most "
        f"{curse['max_overstatement']:+.2f})."
    ]
    for window in result["windows"]:
        if window["best"] is None:
            continue
        low, high = window["accuracy_interval"]
        where = f"{window['cap'] / 1000:.0f}k tokens"
        if window.get("share") is not None:
            where = f"{100 * window['share']:.0f}% of SC@64's tokens ({where} on the search set)"
        cross = window.get("cross_validated_accuracy")
        validated = ""
        if cross is not None:
            low_cv, high_cv = window["cross_validated_interval"]
            validated = (
                f" Chosen this way on {FOLDS - 1} of {FOLDS} folds of the questions, the best "
                f"scores {cross:.2f}% [{low_cv:.2f}, {high_cv:.2f}] on the fold left out "
                f"({cross - window['accuracy']:+.2f})."
            )
        lines.append(
            f"Within {where}: {window['best']} is the raced best, "
            f"{window['accuracy']:.2f}% [{low:.2f}, {high:.2f}]; {len(window['tied'])} of the "
            f"other {window['contenders_inside'] - 1} contenders inside are statistically tied "
            f"with it.{validated}"
        )
    return lines
