"""Scoring graphs on cross-model environments: mean accuracy, tokens, cost and per-model
tokens over questions × seeds, with their bootstrap intervals (questions, then seeds within
question; see :mod:`autotts.results.stats`), spread over worker processes that load the stores once."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, fields

import numpy as np

from ..core.episodes import Tally, play_episodes
from ..envs.cross_model import CostModel, CrossModelEnvironment, dataset_models
from ..envs.registry import shared
from ..evaluation.evaluator import _blocks
from ..results.stats import estimate
from .execute import GraphController
from .graph import CollabGraph


@dataclass(frozen=True)
class CrossSpec:
    """How to build a cross-model environment (picklable, for workers)."""

    dataset: str
    models: tuple[str, ...] | None = None
    env_dir: str | None = None
    cost_table: str | None = None  # JSON of a CostModel

    @property
    def env_id(self) -> str:
        """``M1+M2+…/DATASET`` (every model with a store of the dataset when none are named)."""
        models = self.models or dataset_models(self.dataset, self.env_dir)
        return f"{'+'.join(models)}/{self.dataset}"

    def build(self) -> CrossModelEnvironment:
        """The environment, shared within this process (workers load the stores once)."""
        cost = CostModel.model_validate_json(self.cost_table) if self.cost_table else None
        return shared(self.env_id, self.env_dir, cost_model=cost)

    def on(self, dataset: str) -> CrossSpec:
        return CrossSpec(dataset, self.models, self.env_dir, self.cost_table)


@dataclass
class Score:
    """Means per question over every (question, seed) episode, with the accuracy's standard
    error and 95 % intervals of accuracy, tokens and cost. ``outcomes`` holds the
    ``(questions, seeds)`` tables of accuracy (percent), tokens and cost behind them (for
    paired comparisons; never serialised)."""

    accuracy: float  # percent
    tokens: float
    cost: float
    model_tokens: dict[str, float] = field(default_factory=dict)
    episodes: int = 0
    errors: int = 0
    first_error: str | None = None
    accuracy_se: float | None = None
    accuracy_interval: list[float] | None = None
    tokens_interval: list[float] | None = None
    cost_interval: list[float] | None = None
    outcomes: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The JSON-ready fields (everything but ``outcomes``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "outcomes"}


def environment(spec: CrossSpec) -> CrossModelEnvironment:
    return spec.build()


def _score_block(graph_json: str, beta: float, spec: CrossSpec, questions, seeds: int) -> tuple:
    env = environment(spec)
    controller = GraphController(CollabGraph.model_validate_json(graph_json))
    params = controller.params(beta)
    tally = Tally(model_tokens=dict.fromkeys(env.models, 0))
    table = np.zeros((3, len(questions), seeds))  # correct, tokens, cost per episode
    episodes = ((env, params, q, seed) for q in questions for seed in range(seeds))
    for i, result in enumerate(
        play_episodes(controller, episodes, time_limit_s=None, record_trace=False)
    ):
        cost = result.cost or 0.0
        table[:, i // seeds, i % seeds] = (tally.add(env, result), result.tokens, cost)
    t = tally
    return t.correct, t.tokens, t.cost, t.model_tokens, t.errors, t.first_error, table


class GraphEvaluator:
    """Scores graphs on one cross-model environment with ``workers`` processes (1: in this
    process). Use as a context manager so the worker pool is shut down."""

    def __init__(self, spec: CrossSpec, seeds: int, workers: int | None = None):
        self.spec, self.seeds = spec, seeds
        self.env = environment(spec)  # validates the stores here, with a clear error
        self.workers = workers or min(2, os.cpu_count() or 1)
        self._pool = ProcessPoolExecutor(self.workers) if self.workers > 1 else None

    def __enter__(self) -> GraphEvaluator:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def score(self, graph: CollabGraph, beta: float = 1.0, seeds: int | None = None) -> Score:
        seeds = seeds or self.seeds
        n = len(self.env)
        blocks = _blocks(n, 2 * self.workers if self._pool else 1)
        text = graph.model_dump_json()
        if self._pool is None:
            parts = [_score_block(text, beta, self.spec, b, seeds) for b in blocks]
        else:
            futures = [
                self._pool.submit(_score_block, text, beta, self.spec, b, seeds) for b in blocks
            ]
            parts = [f.result() for f in futures]
        return _merge(parts, n * seeds)


def _merge(parts: Sequence[tuple], episodes: int) -> Score:
    correct = sum(p[0] for p in parts)
    per_model: dict[str, float] = {}
    for p in parts:
        for model, n in p[3].items():
            per_model[model] = per_model.get(model, 0) + n
    correct_t, tokens_t, cost_t = np.concatenate([p[6] for p in parts], axis=1)
    accuracy_t = 100.0 * correct_t
    accuracy = estimate([accuracy_t])
    return Score(
        accuracy=100.0 * correct / episodes,
        tokens=sum(p[1] for p in parts) / episodes,
        cost=sum(p[2] for p in parts) / episodes,
        model_tokens={m: n / episodes for m, n in per_model.items()},
        episodes=episodes,
        errors=sum(p[4] for p in parts),
        first_error=next((p[5] for p in parts if p[5]), None),
        accuracy_se=accuracy.se,
        accuracy_interval=list(accuracy.interval),
        tokens_interval=list(estimate([tokens_t]).interval),
        cost_interval=list(estimate([cost_t]).interval),
        outcomes={"accuracy": accuracy_t, "tokens": tokens_t, "cost": cost_t},
    )


__all__ = ["CrossSpec", "GraphEvaluator", "Score", "environment"]
