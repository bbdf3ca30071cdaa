"""Accuracy-vs-cost frontiers: the best single-model controllers (SC@N, ASC, CMC over their
sweeps, on each model) against collaboration graphs at equal cost.

Single-model points run on the fast single-model replay (their cost is tokens × the model's
price per token, exactly what the cross-model environment charges: a graph of one generate
node replays its controller on that model token for token). The *single-model envelope* at
cost C is the best accuracy any of those points reaches at cost ≤ C; a graph's *gain* is its
accuracy minus the envelope at its own cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ..evaluation import RunConfig, evaluate
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
    from ..loader import load_controller

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
        points.append(
            {
                "label": f"{model} {row.controller} β={row.config.beta:g}",
                "model": model,
                "controller": row.controller,
                "beta": row.config.beta,
                "accuracy": row.accuracy,
                "tokens": row.tokens,
                "cost": row.tokens * env.rates[model],
                "errors": row.errors,
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
                    {"label": label, "graph": graph.name, "beta": beta, **score.to_dict()}
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
        if c > cost * (1 + 1e-9):  # equal costs summed in another order may differ in the last bit
            break
        best = a
    return best


def pareto(points: Sequence[dict]) -> list[dict]:
    """Points no other point beats on both accuracy (higher) and cost (lower), by cost."""
    front = []
    for p in sorted(points, key=lambda p: (p["cost"], -p["accuracy"])):
        if not front or p["accuracy"] > front[-1]["accuracy"]:
            front.append(p)
    return front


def with_gains(points: Sequence[dict], single: Sequence[dict], key: str = "") -> list[dict]:
    """``points`` with ``single_best{key}`` (the single-model envelope at their cost) and
    ``gain{key}`` (their accuracy minus it)."""
    stairs = envelope(single)
    out = []
    for p in points:
        base = envelope_at(stairs, p["cost"])
        out.append(dict(p, **{f"single_best{key}": base, f"gain{key}": p["accuracy"] - base}))
    return out


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
    "single_model_points",
    "on_envelope",
    "with_gains",
]
