"""Uncertainty of replay results, and the curve summaries TTS papers report.

Every accuracy is a mean over questions × seeds. Its uncertainty comes from a two-level
bootstrap: questions are resampled with replacement, then seeds within each resampled
question (the seeds of one question are not independent draws of the benchmark, the
questions are). A mean over several environments averages their replicates, each
environment weighing the same (environments are fixed, not resampled). Comparisons are
*paired*: both controllers' outcomes on the same (question, seed) episodes are resampled
together, so the interval is that of the difference, far narrower than two separate ones.

The bootstrap generator is seeded, so every interval is reproducible.

Curve summaries (:func:`area_under_log_curve`, :func:`tokens_to_reach`,
:func:`hypervolume`, :func:`arise`) take points ``(tokens, accuracy)`` of one curve.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

REPLICATES = 1000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 20251124


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap standard error and ``CONFIDENCE`` percentile interval."""

    mean: float
    se: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.se:.2f} [{self.low:.2f}, {self.high:.2f}]"

    @property
    def interval(self) -> tuple[float, float]:
        return self.low, self.high


def bootstrap_replicates(
    tables: Sequence[np.ndarray], replicates: int = REPLICATES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
    """Replicate means of the mean over ``tables`` (one per environment, shape
    ``(questions, seeds)``): questions resampled, then seeds within each question."""
    return joint_replicates({0: list(tables)}, replicates, seed)[0]


def joint_replicates(
    groups: dict, replicates: int = REPLICATES, seed: int = BOOTSTRAP_SEED
) -> dict:
    """Replicate means (over environments) of several groups of tables resampled *together*:
    ``groups[key][e]`` is key's ``(questions, seeds)`` table on environment ``e``, the same
    shape for every key, and every key sees the same resampled episodes — so any statistic
    of several curves (a margin, an interpolation) gets a paired interval."""
    keys = list(groups)
    if not keys:
        return {}
    n_envs = len(groups[keys[0]])
    rng = np.random.default_rng(seed)
    totals = {key: np.zeros(replicates) for key in keys}
    for e in range(n_envs):
        n_questions, n_seeds = np.shape(groups[keys[0]][e])
        questions = rng.integers(0, n_questions, size=(replicates, n_questions))
        seeds = rng.integers(0, n_seeds, size=(replicates, n_questions, n_seeds))
        for key in keys:
            table = np.asarray(groups[key][e], dtype=float)
            if table.shape != (n_questions, n_seeds):
                raise ValueError(f"{key}: environment {e} has another shape than the others")
            totals[key] += table[questions[..., None], seeds].mean(axis=(1, 2))
    return {key: total / n_envs for key, total in totals.items()}


def interval_of(mean: float, values: np.ndarray) -> Estimate:
    """An :class:`Estimate` from a point estimate and its bootstrap replicates."""
    return _from_replicates(mean, np.asarray(values, dtype=float))


def estimate(
    tables: Sequence[np.ndarray], replicates: int = REPLICATES, seed: int = BOOTSTRAP_SEED
) -> Estimate:
    """The mean over environments of each table's mean, with its bootstrap uncertainty."""
    if not tables:
        raise ValueError("estimate() needs at least one table of outcomes")
    mean = sum(float(np.mean(t)) for t in tables) / len(tables)
    return _from_replicates(mean, bootstrap_replicates(tables, replicates, seed))


def _from_replicates(mean: float, values: np.ndarray) -> Estimate:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Estimate(mean, float(np.std(values, ddof=1)), float(low), float(high))


def paired_difference(
    a: Sequence[np.ndarray], b: Sequence[np.ndarray], replicates: int = REPLICATES
) -> Estimate:
    """``mean(a) - mean(b)`` over the same (question, seed) episodes, with its paired
    uncertainty (``a[e]`` and ``b[e]`` must have the same shape for every environment)."""
    if len(a) != len(b) or any(np.shape(x) != np.shape(y) for x, y in zip(a, b, strict=True)):
        raise ValueError("a paired comparison needs the same questions and seeds on both sides")
    differences = [np.asarray(x, float) - np.asarray(y, float) for x, y in zip(a, b, strict=True)]
    return estimate(differences, replicates)


def paired_by_question(
    a: np.ndarray, b: np.ndarray, replicates: int = REPLICATES, seed: int = BOOTSTRAP_SEED
) -> Estimate:
    """``mean(a) - mean(b)`` of two ``(questions, seeds)`` tables over the same questions whose
    seeds are not the same episodes (live and replay): questions are resampled together,
    then each side's seeds within each question, apart (even where both have as many)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0] or 0 in a.shape + b.shape:
        raise ValueError(
            f"paired_by_question needs two (questions, seeds) tables over the same questions, "
            f"got shapes {a.shape} and {b.shape}"
        )
    rng = np.random.default_rng(seed)
    questions = rng.integers(0, a.shape[0], size=(replicates, a.shape[0]))

    def means(table: np.ndarray) -> np.ndarray:
        seeds = rng.integers(0, table.shape[1], size=(*questions.shape, table.shape[1]))
        return table[questions[..., None], seeds].mean(axis=(1, 2))

    return interval_of(float(a.mean() - b.mean()), means(a) - means(b))


@dataclass(frozen=True)
class Verdict:
    """The outcome of comparing a candidate with a baseline: ``kind`` is ``"beats"``,
    ``"worse"`` or ``"no significant difference"`` (``"matches"``/``"does not match"`` for
    an equivalence test with a margin), and ``difference`` the paired estimate."""

    kind: str
    difference: Estimate

    def __str__(self) -> str:
        d = self.difference
        return (
            f"{self.kind} (difference {d.mean:+.2f} points, {CONFIDENCE:.0%} interval "
            f"[{d.low:+.2f}, {d.high:+.2f}])"
        )

    @property
    def significant(self) -> bool:
        return self.kind in ("beats", "worse", "matches")


def superiority(difference: Estimate) -> Verdict:
    """``beats`` only when the whole interval of the difference lies above zero, ``worse``
    when below; otherwise ``no significant difference``."""
    if difference.low > 0:
        return Verdict("beats", difference)
    if difference.high < 0:
        return Verdict("worse", difference)
    return Verdict("no significant difference", difference)


def non_inferiority(difference: Estimate, margin: float) -> Verdict:
    """``matches`` only when the interval's lower end is within ``margin`` points of zero (the
    candidate is at most ``margin`` worse, with the interval's confidence)."""
    kind = "matches" if difference.low >= -margin else "does not match"
    return Verdict(kind, difference)


# --- curve summaries ------------------------------------------------------------------


def mean_over_envs(points: Iterable[Sequence[float]]) -> tuple[float, float]:
    """Mean accuracy and mean tokens of per-environment ``(accuracy, tokens)`` points: every
    environment weighs the same, as in the paper's averages."""
    points = list(points)
    return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)


def mean_curve(rows) -> list[dict]:
    """One point per configuration of evaluation rows (in order) averaged over its
    environments: ``setting``,
    ``beta``, ``accuracy``, ``tokens``, ``per_env`` (``[accuracy, tokens]`` by id), ``status``."""
    groups: dict = {}
    for row in rows:
        groups.setdefault(row.config, []).append(row)
    curve = []
    for config, mine in groups.items():
        accuracy, tokens = mean_over_envs((r.accuracy, r.tokens) for r in mine)
        curve.append(
            {
                "setting": config.setting,
                "beta": config.beta,
                "accuracy": accuracy,
                "tokens": tokens,
                "per_env": {r.env_id: [r.accuracy, r.tokens] for r in mine},
                "status": sorted({r.status for r in mine}),
            }
        )
    return curve


def cost_drops(betas: Sequence[float], tokens: Sequence[float], tolerance: float) -> list[str]:
    """The β contract: where mean tokens fall (beyond ``tolerance``, relative) as β grows."""
    return [
        f"β {betas[i - 1]:g}→{betas[i]:g}: {tokens[i - 1]:,.0f}→{tokens[i]:,.0f} tokens"
        for i in range(1, len(tokens))
        if tokens[i] < tokens[i - 1] * (1 - tolerance)
    ]


def _envelope(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The best accuracy reached at each token level or below, by increasing tokens."""
    best, out = -math.inf, []
    for tokens, accuracy in sorted(points):
        best = max(best, accuracy)
        out.append((tokens, best))
    return out


def accuracy_at(points: Sequence[tuple[float, float]], tokens: float) -> float | None:
    """The envelope's accuracy at ``tokens`` (linear in log tokens); ``None`` outside it."""
    env = _envelope(points)
    if not env or tokens < env[0][0] or tokens > env[-1][0]:
        return None
    for (t0, a0), (t1, a1) in zip(env, env[1:], strict=False):
        if t0 <= tokens <= t1:
            if t1 == t0:
                return max(a0, a1)
            w = (math.log(tokens) - math.log(t0)) / (math.log(t1) - math.log(t0))
            return a0 + w * (a1 - a0)
    return env[-1][1]


def area_under_log_curve(points: Sequence[tuple[float, float]], low: float, high: float) -> float:
    """Mean envelope accuracy over ``[low, high]`` tokens on a log axis (trapezoids; the
    curve is held flat beyond its last point and counts 0 before its first)."""
    if not 0 < low < high:
        raise ValueError("area_under_log_curve needs 0 < low < high")
    env = _envelope(points)
    grid = np.geomspace(low, high, 257)
    values = []
    for t in grid:
        if not env or t < env[0][0]:
            values.append(0.0)
        elif t >= env[-1][0]:
            values.append(env[-1][1])
        else:
            values.append(accuracy_at(points, t))
    x = np.log(grid)
    y = np.asarray(values)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def tokens_to_reach(points: Sequence[tuple[float, float]], accuracy: float) -> float | None:
    """The fewest tokens at which the envelope reaches ``accuracy`` (log-linear between
    points); ``None`` when it never does."""
    env = _envelope(points)
    previous = None
    for tokens, acc in env:
        if acc >= accuracy:
            if previous is None or previous[1] == acc:
                return tokens
            t0, a0 = previous
            w = (accuracy - a0) / (acc - a0)
            return math.exp(math.log(t0) + w * (math.log(tokens) - math.log(t0)))
        previous = (tokens, acc)
    return None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points ``(tokens, accuracy)`` no other point dominates (at most as many tokens and
    at least as much accuracy, one of them strictly), by increasing tokens."""
    front: list[tuple[float, float]] = []
    for tokens, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((tokens, accuracy))
    return front


def hypervolume(points: Sequence[tuple[float, float]], reference_tokens: float) -> float:
    """Area (accuracy × log10 tokens) dominated by the points' Pareto front, bounded by
    accuracy 0 and ``reference_tokens`` (more accuracy and fewer tokens dominate)."""
    area, best = 0.0, 0.0
    for tokens, accuracy in sorted(points):
        if tokens < reference_tokens and accuracy > best:
            area += (accuracy - best) * (math.log10(reference_tokens) - math.log10(tokens))
            best = accuracy
    return area


def arise(accuracy: np.ndarray, tokens: np.ndarray) -> float:
    """ARISE (arXiv 2510.06014): per question, the sum over adjacent budget levels of
    ``Δacc · (t_prev / t_curr) ** sign(Δacc)``, averaged over questions. ``accuracy`` and
    ``tokens`` have shape ``(questions, levels)``, levels ordered by increasing budget;
    gains bought with many more tokens count less, losses with few more tokens count more."""
    acc = np.asarray(accuracy, dtype=float)
    tok = np.asarray(tokens, dtype=float)
    if acc.shape != tok.shape or acc.ndim != 2 or acc.shape[1] < 2:
        raise ValueError("arise() needs (questions, levels ≥ 2) arrays of the same shape")
    delta = np.diff(acc, axis=1)
    ratio = tok[:, :-1] / tok[:, 1:]
    return float(np.mean(np.sum(delta * ratio ** np.sign(delta), axis=1)))


__all__ = [
    "CONFIDENCE",
    "Estimate",
    "Verdict",
    "accuracy_at",
    "area_under_log_curve",
    "arise",
    "bootstrap_replicates",
    "cost_drops",
    "mean_curve",
    "mean_over_envs",
    "estimate",
    "hypervolume",
    "interval_of",
    "joint_replicates",
    "paired_by_question",
    "non_inferiority",
    "paired_difference",
    "pareto_front",
    "superiority",
    "tokens_to_reach",
]
