"""Scoring composable points in bulk: a β sweep or a batch of trials in one pass.

:func:`score` plays points of the composable space (:mod:`.composable`, the policy's
specification) on every (question, seed) episode of a replay store with its one compiled form
(:mod:`.compiled`, numba), equal to the per-episode engine episode by episode
(tests/discovery/test_bulk_scoring.py); ``benchmarks/bulk_scoring.py`` prints the speed-up.
:func:`evaluate_composable` wraps that into the
:class:`~autotts.results.evaluation_report.EvaluationReport` :func:`autotts.evaluate` would
return for the same configurations (without traces).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from math import exp

import numpy as np

from ..core.voting import beta_confidence_table
from ..envs.registry import resolve_ids, shared
from ..envs.replay import ReplayEnvironment
from ..envs.replay_arrays import VectorData, branch_rows
from ..evaluation.evaluator import summarise_units, token_ceilings
from ..loading.run_configs import RunConfig
from ..results.evaluation_report import EvaluationReport, UnitResult
from .composable import DECAY_SCALE, NEUTRAL
from .search_space import CHOICES

WIDEN = {name: code for code, name in enumerate(CHOICES["widen"])}  # stagnant, eager, never
_DATA: dict[int, tuple[ReplayEnvironment, VectorData]] = {}


def vector_data(env: ReplayEnvironment) -> VectorData:
    """The arrays of ``env`` (built once per environment object)."""
    cached = _DATA.get(id(env))
    if cached is None or cached[0] is not env:
        cached = _DATA[id(env)] = (env, VectorData.from_env(env))
    return cached[1]


def vote_weight(final_votes, depth_decay, depth: int) -> float:
    """A finished branch's length-weighted vote, the same float operations as the controller's
    ``final_votes * exp(-depth_decay * depth / DECAY_SCALE)``."""
    return final_votes * exp(-depth_decay * depth / DECAY_SCALE)


def _tables(points: list[dict], longest: int):
    """The integer and float knobs of every point as arrays, and its vote weight per depth
    (``final_votes · exp(−γ · depth / 32)``, computed exactly as the controller does)."""
    from .compiled import FLOAT_KNOBS, INT_KNOBS

    def knob(point, name):
        if name == "widen":
            return WIDEN[point["widen"]]
        if name == "decay":
            return int(bool(point["depth_decay"]))
        return int(point[name])

    ints = np.array([[knob(p, name) for name in INT_KNOBS] for p in points], dtype=np.int64)
    floats = np.array([[p[name] for name in FLOAT_KNOBS] for p in points], dtype=np.float64)
    weights = np.array(
        [
            [vote_weight(p["final_votes"], p["depth_decay"], d) for d in range(longest)]
            for p in points
        ]
    )
    return ints, floats, weights


def _play_compiled(data: VectorData, points, index, questions, seeds, width):
    from .compiled import play_batch

    ints, floats, weights = _tables(points, data.probes.shape[1] + 2)
    top = max(p["final_votes"] + p["probe_votes"] for p in points) * width + 2
    return play_batch(
        branch_rows(data, questions, seeds, width), questions, index, ints, floats, weights,
        beta_confidence_table(top), data.probes, data.lengths.astype(np.int64), data.rest,
        data.finals.astype(np.int64), data.delta, data.err.astype(np.int64),
        data.n_ids,
    )  # fmt: skip


def score(
    data: VectorData,
    points: list[dict],
    seeds: int,
    questions=None,
    first_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Play every point on every (question, seed) episode, seeds ``first_seed`` onwards, with
    the compiled policy. Returns ``(answers, correct, tokens)``, each of shape (points,
    questions, seeds); answers are ids of ``data.answers[question]`` (-1: none)."""
    points = [{**NEUTRAL, **point} for point in points]
    questions = np.arange(len(data.delta)) if questions is None else np.asarray(questions)
    shape = (len(points), len(questions), seeds)
    grid = np.indices(shape).reshape(3, -1)
    q_all, seed_all = questions[grid[1]], grid[2] + first_seed
    width = min(data.n_branches, int(max(point["max_branches"] for point in points)))
    answers, tokens = _play_compiled(data, points, grid[0], q_all, seed_all, width)
    correct = data.correct(q_all, answers)
    return answers.reshape(shape), correct.reshape(shape), tokens.reshape(shape)


def evaluate_composable(
    configs: list[RunConfig],
    points: list[dict],
    envs,
    seeds: int,
    env_dir=None,
    intervals: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationReport:
    """What :func:`autotts.evaluate` returns for ``configs`` — composable controllers whose
    ``run()`` parameters are ``points`` — on replay environments, scored in one pass per
    environment (no traces are recorded; ``intervals=False`` leaves out the rows' bootstrap
    estimates, e.g. for search trials that record means only). ``progress(done, total)`` is
    called after each environment."""
    start = time.perf_counter()
    env_ids = resolve_ids([envs] if isinstance(envs, str) else list(envs), env_dir)
    env_dir = None if env_dir is None else str(env_dir)
    units = []
    for done, env_id in enumerate(env_ids):
        if progress:
            progress(done, len(env_ids))
        began = time.perf_counter()
        env = shared(env_id, env_dir)
        _, correct, tokens = score(vector_data(env), points, seeds)
        share = (time.perf_counter() - began) / len(configs)
        for k, config in enumerate(configs):
            unit = UnitResult.empty(config, env_id, range(len(env)), seeds)
            unit.seed_correct = correct[k].astype(int).tolist()
            unit.seed_tokens = tokens[k].tolist()
            unit.episodes, unit.seconds = len(env) * seeds, share
            units.append(unit)
    if progress:
        progress(len(env_ids), len(env_ids))
    return EvaluationReport(
        summarise_units(units, configs, env_ids, intervals),
        units,
        seeds,
        time.perf_counter() - start,
        token_ceilings([shared(e, env_dir) for e in env_ids], env_ids),
    )


def score_per_episode(env: ReplayEnvironment, points: list[dict], seeds: int):
    """The reference the compiled policy must equal: every point played by the per-episode
    engine on every (question, seed). Returns ``(answers, tokens)`` of shape (points,
    questions, seeds), answers as strings (None: no answer); an episode error raises."""
    from .composable import ComposableController

    controller = ComposableController()
    answers = np.empty((len(points), len(env), seeds), dtype=object)
    tokens = np.empty(answers.shape, dtype=np.int64)
    for p, params in enumerate(points):
        for q in range(len(env)):
            for s in range(seeds):
                result = env.run_episode(controller, params, q, s)
                if result.error is not None:
                    raise RuntimeError(f"point {p}, question {q}, seed {s}: {result.error}")
                answers[p, q, s], tokens[p, q, s] = result.answer, result.tokens
    return answers, tokens
