"""Accuracy-vs-cost frontiers: the best single-model controllers (SC@N, ASC, CMC over their
sweeps, on each model) against collaboration graphs at equal cost.

Single-model points run on the fast single-model replay (their cost is tokens × the model's
price per token, exactly what the cross-model environment charges: a graph of one generate
node replays its controller on that model token for token). The *single-model envelope* at
cost C is the best accuracy any of those points reaches at cost ≤ C; a graph's *gain* is its
accuracy minus the envelope at its own cost, with a paired bootstrap interval against the
single-model point the envelope takes there (same questions, same seeds).

Points carry their per-episode outcome tables under ``"_outcomes"`` while in memory
(:func:`public` drops them before anything is written).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ..evaluation.evaluator import RunConfig, evaluate
from ..results.stats import paired_difference
from .evaluate import CrossSpec, GraphEvaluator, environment
from .graph import CollabGraph

SINGLE_CONTROLLERS = ("sc", "asc", "cmc")
SWEEP = tuple(round(0.1 * i, 1) for i in range(11))


def single_model_points(
    spec: CrossSpec,
    seeds: int,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Every model × {SC, ASC, CMC} × β sweep on ``spec``'s dataset (duplicates of the same
    parameters, e.g. SC's n at neighbouring β, evaluated once)."""
    from ..loading.controller_files import load_controller

    env = environment(spec)
    configs, seen = [], set()
    for name in SINGLE_CONTROLLERS:
        controller = load_controller(name)
        for beta in SWEEP:
            key = (name, tuple(sorted(controller.params(beta).items())))
            if key not in seen:
                seen.add(key)
                configs.append(RunConfig(name, beta=beta))
    env_ids = [f"{model}/{spec.dataset}" for model in env.models]
    report = evaluate(
        configs, env_ids, seeds=seeds, env_dir=spec.env_dir, workers=workers, progress=progress
    )
    points = []
    for row in report.rows:
        model = row.env_id.split("/")[0]
        rate = env.rates[model]
        correct, _ = report.outcomes(row)
        acc, tok = row.accuracy_estimate, row.tokens_estimate
        points.append(
            {
                "label": f"{model} {row.controller} β={row.config.beta:g}",
                "model": model,
                "controller": row.controller,
                "beta": row.config.beta,
                "accuracy": row.accuracy,
                "tokens": row.tokens,
                "cost": row.tokens * rate,
                "errors": row.errors,
                "accuracy_se": acc and acc.se,
                "accuracy_interval": acc and list(acc.interval),
                "cost_interval": tok and [tok.low * rate, tok.high * rate],
                "_outcomes": {"accuracy": 100.0 * np.asarray(correct, dtype=float)},
            }
        )
    return points


def graph_points(
    graphs: Sequence[CollabGraph],
    spec: CrossSpec,
    seeds: int,
    betas: Sequence[float] = (1.0,),
    workers: int | None = None,
) -> list[dict]:
    """Each graph at each graph-level β (scaling its nodes' β and width)."""
    points = []
    with GraphEvaluator(spec, seeds, workers) as evaluator:
        for graph in graphs:
            for beta in betas:
                score = evaluator.score(graph, beta)
                label = graph.name if beta == 1.0 else f"{graph.name} β={beta:g}"
                points.append(
                    {
                        "label": label,
                        "graph": graph.name,
                        "beta": beta,
                        **score.to_dict(),
                        "_outcomes": score.outcomes,
                    }
                )
    return points


def envelope(points: Sequence[dict]) -> list[tuple[float, float]]:
    """The staircase of best accuracy reachable at cost ≤ c: ``[(cost, accuracy), …]`` with
    both increasing (the :func:`pareto` front's coordinates)."""
    return [(p["cost"], p["accuracy"]) for p in pareto(points)]


def envelope_at(stairs: Sequence[tuple[float, float]], cost: float) -> float:
    """Best single-model accuracy at cost ≤ ``cost`` (``-inf`` below the cheapest point)."""
    best = -math.inf
    for c, a in stairs:
        if not _within(c, cost):
            break
        best = a
    return best


def _within(cost: float, budget: float) -> bool:
    # equal costs summed in another order may differ in the last bit
    return cost <= budget * (1 + 1e-9)


def pareto(points: Sequence[dict]) -> list[dict]:
    """Points no other point beats on both accuracy (higher) and cost (lower), by cost."""
    front = []
    for p in sorted(points, key=lambda p: (p["cost"], -p["accuracy"])):
        if not front or p["accuracy"] > front[-1]["accuracy"]:
            front.append(p)
    return front


def with_gains(points: Sequence[dict], single: Sequence[dict], key: str = "") -> list[dict]:
    """``points`` with ``single_best{key}`` (the single-model envelope at their cost),
    ``gain{key}`` (their accuracy minus it) and ``gain{key}_interval`` (the gain's paired 95 %
    interval against that envelope point, when both carry outcome tables of one shape)."""
    front = pareto(single)
    out = []
    for p in points:
        below = [s for s in front if _within(s["cost"], p["cost"])]
        base = below[-1] if below else None
        best = base["accuracy"] if base else -math.inf
        extra = {f"single_best{key}": best, f"gain{key}": p["accuracy"] - best}
        extra[f"gain{key}_interval"] = _gain_interval(p, base)
        out.append(dict(p, **extra))
    return out


def _gain_interval(point: dict, base: dict | None) -> list[float] | None:
    mine = (point.get("_outcomes") or {}).get("accuracy")
    theirs = ((base or {}).get("_outcomes") or {}).get("accuracy")
    if mine is None or theirs is None or np.shape(mine) != np.shape(theirs):
        return None
    return list(paired_difference([mine], [theirs]).interval)


def public(value):
    """``value`` without the in-memory ``"_…"`` keys of its dicts, at any depth."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


def on_envelope(points: Sequence[dict]) -> list[dict]:
    """The points that make up the envelope (the single-model configurations one would pick
    from this dataset's results)."""
    stairs = set(envelope(points))
    return [p for p in points if (p["cost"], p["accuracy"]) in stairs]


__all__ = [
    "envelope",
    "envelope_at",
    "graph_points",
    "pareto",
    "public",
    "single_model_points",
    "on_envelope",
    "with_gains",
]
