"""Compressing Pareto points into a β-family: one knob, monotone schedule, normal controller.

Given evaluated points of the composable space (parameters, accuracy, tokens):

1. keep the Pareto front (max accuracy, min tokens);
2. choose the structure (categorical choices) whose own front has the largest hypervolume;
3. place that front's points on β ∈ [0, 1] by their log-tokens;
4. fit every numeric knob as a monotone (isotonic) function of β — increasing or decreasing
   as the knob correlates with cost — and keep it as piecewise-linear knots.

The result renders into the composable controller's schedule block (``family_source``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .space import CHOICES, COMPOSABLE_PATH, RANGES, normalize, structure

BEGIN, END = "# --- schedule (generated) ---", "# --- end schedule ---"


@dataclass
class Point:
    """One evaluated configuration (mean accuracy % and mean tokens over the search set)."""

    params: dict
    accuracy: float
    tokens: float
    label: str = ""


@dataclass
class Family:
    """A fitted β-family: fixed structure plus monotone piecewise-linear knots."""

    fixed: dict
    knots: dict[str, list[tuple[float, float]]]
    anchors: list[Point] = field(default_factory=list)

    def params(self, beta: float) -> dict:
        from .composable import interpolate

        params = dict(self.fixed)
        for key, knots in self.knots.items():
            value = interpolate(knots, beta)
            params[key] = round(value) if RANGES[key][2] else round(value, 4)
        return normalize(params)


def pareto_front(points: list[Point]) -> list[Point]:
    """Non-dominated points, sorted by tokens (ties: higher accuracy first)."""
    ordered = sorted(points, key=lambda p: (p.tokens, -p.accuracy))
    front: list[Point] = []
    for p in ordered:
        if not front or p.accuracy > front[-1].accuracy:
            front.append(p)
    return front


def hypervolume(front: list[Point], ref_accuracy: float, ref_log_tokens: float) -> float:
    """Area dominated by ``front`` in (accuracy ↑, log tokens ↓) above the reference point."""
    area = 0.0
    best = ref_accuracy
    # from the cheapest point up: each adds a rectangle up to the next point's cost
    ordered = pareto_front(front)
    for i, p in enumerate(ordered):
        right = math.log(ordered[i + 1].tokens) if i + 1 < len(ordered) else ref_log_tokens
        width = max(0.0, right - math.log(p.tokens))
        best = max(best, p.accuracy)
        area += width * max(0.0, best - ref_accuracy)
    return area


def curve_score(curve: list[dict], max_tokens: float = 1.2e6) -> float:
    """Area under a curve's accuracy-vs-log-tokens envelope, up to ``max_tokens`` (the score
    that ranks whole β-curves: LLM candidates and tuned schedules)."""
    points = [Point({}, p["accuracy"], p["tokens"]) for p in curve if p["tokens"] > 0]
    return hypervolume(points, 0.0, math.log(max_tokens)) if points else 0.0


def isotonic(values: list[float], increasing: bool) -> list[float]:
    """Least-squares monotone fit (pool adjacent violators)."""
    sign = 1.0 if increasing else -1.0
    blocks: list[list[float]] = []  # [mean, weight]
    for v in values:
        blocks.append([sign * v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2 = blocks.pop()
            m1, w1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2])
    fitted: list[float] = []
    for mean, weight in blocks:
        fitted += [sign * mean] * int(weight)
    return fitted


def _rank(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    for r, i in enumerate(order):
        ranks[i] = float(r)
    return ranks


def _correlation(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def choose_structure_for_windows(points: list[Point], windows: list[float]) -> tuple:
    """The structure whose best accuracies inside the budget windows sum highest (a window it
    has no point in counts as the worst accuracy seen; ties: hypervolume, then size)."""
    worst = min(p.accuracy for p in points)
    ref_log = math.log(max(p.tokens for p in points))
    by_structure: dict[tuple, list[Point]] = {}
    for p in points:
        by_structure.setdefault(structure(p.params), []).append(p)

    def score(key):
        mine = by_structure[key]
        inside = [
            max((p.accuracy for p in mine if p.tokens <= cap), default=worst) for cap in windows
        ]
        return sum(inside), hypervolume(mine, worst, ref_log), len(mine)

    return max(by_structure, key=score)


def choose_structure(points: list[Point]) -> tuple:
    """The structure whose own Pareto front dominates the most (hypervolume)."""
    ref_acc = min(p.accuracy for p in points)
    ref_log = math.log(max(p.tokens for p in points))
    by_structure: dict[tuple, list[Point]] = {}
    for p in points:
        by_structure.setdefault(structure(p.params), []).append(p)
    return max(
        by_structure,
        key=lambda s: (hypervolume(by_structure[s], ref_acc, ref_log), len(by_structure[s])),
    )


def fit_family(
    points: list[Point], max_knots: int = 6, windows: list[float] | None = None
) -> Family:
    """Fit a monotone β-family through the best structure's Pareto front. ``windows``
    (budget caps in tokens): the structure is chosen for its accuracy inside them, and the
    front is cut at the largest, so β = 1 sits at the top of the budget asked for."""
    if not points:
        raise ValueError("no evaluated points to fit a family through")
    if windows:
        chosen = choose_structure_for_windows(points, windows)
        mine = [p for p in points if structure(p.params) == chosen]
        front = pareto_front([p for p in mine if p.tokens <= max(windows)] or mine)
    else:
        chosen = choose_structure(points)
        front = pareto_front([p for p in points if structure(p.params) == chosen])
    fixed = dict(zip(CHOICES, chosen, strict=True))
    if len(front) == 1:
        only = front[0].params
        return Family(fixed, {k: [(0.0, only[k]), (1.0, only[k])] for k in RANGES}, front)
    logs = [math.log(p.tokens) for p in front]
    lo, hi = min(logs), max(logs)
    betas = [(x - lo) / (hi - lo) if hi > lo else i / (len(front) - 1) for i, x in enumerate(logs)]
    # at most max_knots anchor positions, evenly spread over the front
    keep = sorted({round(i * (len(front) - 1) / (max_knots - 1)) for i in range(max_knots)})
    knots: dict[str, list[tuple[float, float]]] = {}
    for key in RANGES:
        values = [float(p.params[key]) for p in front]
        direction = _correlation(_rank(values), _rank([p.tokens for p in front]))
        if direction == 0.0:
            middle = sorted(values)[len(values) // 2]
            knots[key] = [(0.0, middle), (1.0, middle)]
            continue
        fitted = isotonic(values, increasing=direction > 0)
        knots[key] = _dedupe([(round(betas[i], 4), round(fitted[i], 4)) for i in keep])
    return Family(fixed, knots, front)


def _dedupe(knots: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Merge knots at equal β (average values); ensure the ends sit at β = 0 and 1."""
    merged: dict[float, list[float]] = {}
    for b, v in knots:
        merged.setdefault(b, []).append(v)
    out = [(b, round(sum(vs) / len(vs), 4)) for b, vs in sorted(merged.items())]
    if out[0][0] > 0.0:
        out.insert(0, (0.0, out[0][1]))
    if out[-1][0] < 1.0:
        out.append((1.0, out[-1][1]))
    return out


def render_schedule(fixed: dict, knots: dict[str, list[tuple[float, float]]]) -> str:
    """The generated schedule block of a composable controller file."""

    def literal(value) -> str:  # double-quoted strings, as the project's formatter writes
        return json.dumps(value) if isinstance(value, str) else repr(value)

    fixed_text = ", ".join(f"{literal(k)}: {literal(v)}" for k, v in fixed.items())
    # one line per knob (diff-friendly); the formatter is told to leave the block as it is
    lines = [BEGIN, "# fmt: off", f"FIXED = {{{fixed_text}}}", "KNOTS = {"]
    for key, pts in knots.items():
        pts_text = ", ".join(f"({b!r}, {v!r})" for b, v in pts)
        lines.append(f"    {literal(key)}: [{pts_text}],")
    lines += ["}", "# fmt: on", END]
    return "\n".join(lines)


def family_source(
    family: Family, name: str, header: str = "", class_name: str = "DiscoveredController"
) -> str:
    """A self-contained controller file: the composable template with ``family``'s schedule."""
    template = COMPOSABLE_PATH.read_text()
    start, stop = template.index(BEGIN), template.index(END) + len(END)
    source = template[:start] + render_schedule(family.fixed, family.knots) + template[stop:]
    source = source.replace("class ComposableController(", f"class {class_name}(")
    source = source.replace('name = "composable"', f"name = {json.dumps(name)}")
    return (header + "\n" if header else "") + source


def is_family_file(path) -> bool:
    """Whether ``path`` is the composable template with only its schedule, class name,
    ``name`` and header changed (what :func:`family_source` writes): such a file can be scored
    by the vectorised engines from its ``params(beta)``."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return False
    template = COMPOSABLE_PATH.read_text()
    if BEGIN not in text or END not in text:
        return False
    block = text[text.index(BEGIN) : text.index(END) + len(END)]
    start, stop = template.index(BEGIN), template.index(END) + len(END)
    expected = template[:start] + block + template[stop:]
    cls = re.search(r"^class (\w+)\(Controller\):", text, re.M)
    name = re.search(r'^    name = (".*")$', text, re.M)
    if not (cls and name):
        return False
    expected = expected.replace("class ComposableController(", f"class {cls.group(1)}(")
    expected = expected.replace('name = "composable"', f"name = {name.group(1)}")
    return text.endswith(expected)
