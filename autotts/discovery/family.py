"""Compressing Pareto points into a β-family: one knob, monotone schedule, normal controller.

Given evaluated points of the composable space (parameters, accuracy, tokens):

1. keep the Pareto front (max accuracy, min tokens);
2. choose the structure (categorical choices) whose own front has the largest hypervolume;
3. place that front's points on β ∈ [0, 1] by their log-tokens;
4. fit every numeric knob as a monotone (isotonic) function of β — increasing or decreasing
   as the knob correlates with cost — and keep it as piecewise-linear knots.

:func:`anchor_family` (the default once the contenders are raced) keeps points of the front
themselves instead: each β-grid setting is one of them, and the structure may switch along β.

The result renders as a short controller file: a subclass of the composable policy that
sets its schedule (``family_source``).
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .search_space import CHOICES, RANGES, normalize, structure


@dataclass
class Point:
    """One evaluated configuration (mean accuracy % and mean tokens over the search set)."""

    params: dict
    accuracy: float
    tokens: float
    label: str = ""
    env_tokens: tuple[float, ...] = ()  # mean tokens per search environment (when known)


@dataclass
class Family:
    """A fitted β-family: fixed structure plus monotone piecewise-linear knots."""

    fixed: dict
    knots: dict[str, list[tuple[float, float]]]
    anchors: list[Point] = field(default_factory=list)
    # (β, choices): from that β on, these structural choices replace ``fixed``'s
    switches: list[tuple[float, dict]] = field(default_factory=list)

    def params(self, beta: float) -> dict:
        from .composable import interpolate

        params = dict(self.fixed)
        for start, choices in self.switches:
            if beta >= start:
                params.update(choices)
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


LADDER = (0.8, 0.9, 1.0)  # per budget window, the best points under these shares of its cap


def anchor_family(points: list[Point], windows: list[float], slots: int = 11) -> Family:
    """A β-family through evaluated points themselves (no smoothing): up to ``slots`` points of
    the Pareto front of ``points`` (all structures) up to the largest window, placed on the
    β grid 0, 0.1, …, 1 in token order, so each grid setting *is* one of them. Always kept:
    per window, the most accurate point under 80 %, 90 % and 100 % of its cap (a ladder, so
    some setting stays inside the window where questions run longer); the rest spread evenly
    in log-tokens. The points kept cost more from one to the next on *every* search
    environment (:func:`monotone_chain`), so β orders cost everywhere, not just on the mean.
    Numeric knobs interpolate linearly between neighbours; the structure switches half-way
    between neighbours whose choices differ."""
    if not points:
        raise ValueError("no evaluated points to fit a family through")
    top = max(windows) if windows else math.inf
    front = pareto_front([p for p in points if p.tokens <= top] or points)
    keep = {
        id(best)
        for cap in windows
        for share in LADDER
        if (
            best := max(
                (p for p in front if p.tokens <= cap * share),
                default=None,
                key=lambda p: p.accuracy,
            )
        )  # fmt: skip
    }
    front = monotone_chain(front, keep)
    keep = {id(p) for p in front if id(p) in keep} | {id(front[0]), id(front[-1])}
    chosen = [p for p in front if id(p) in keep]
    logs = {id(p): math.log(p.tokens) for p in front}
    while len(chosen) < min(slots, len(front)):  # the point farthest from those kept
        spare = [p for p in front if p not in chosen]
        chosen.append(max(spare, key=lambda p: min(abs(logs[id(p)] - logs[id(c)]) for c in chosen)))
    chosen = sorted(chosen, key=lambda p: p.tokens)[:slots]
    n = len(chosen)
    betas = [round(round(10 * i / (n - 1)) / 10, 4) if n > 1 else 1.0 for i in range(n)]
    knots = {
        key: [(b, p.params[key]) for b, p in zip(betas, chosen, strict=True)] for key in RANGES
    }
    shapes = [dict(zip(CHOICES, structure(p.params), strict=True)) for p in chosen]
    switches = [
        (round((betas[i - 1] + betas[i]) / 2, 4),
         {k: v for k, v in shapes[i].items() if v != shapes[i - 1][k]})
        for i in range(1, n)
        if shapes[i] != shapes[i - 1]
    ]  # fmt: skip
    if n == 1:
        knots = {
            key: [(0.0, chosen[0].params[key]), (1.0, chosen[0].params[key])] for key in RANGES
        }
    return Family(shapes[0], knots, chosen, switches)


def monotone_chain(points: list[Point], preferred: set[int]) -> list[Point]:
    """The longest run of ``points`` (sorted by mean tokens) in which every point costs at
    least as much as the one before on every environment (``env_tokens``); points whose id is
    in ``preferred`` count a thousand times more than the others."""
    points = sorted(points, key=lambda p: p.tokens)

    def below(a: Point, b: Point) -> bool:
        return all(x <= y for x, y in zip(a.env_tokens, b.env_tokens, strict=False))

    weight = [1000 if id(p) in preferred else 1 for p in points]
    best, previous = list(weight), [-1] * len(points)
    for i in range(len(points)):
        for j in range(i):
            if below(points[j], points[i]) and best[j] + weight[i] > best[i]:
                best[i], previous[i] = best[j] + weight[i], j
    i, chain = max(range(len(points)), key=best.__getitem__), []
    while i >= 0:
        chain.append(points[i])
        i = previous[i]
    return chain[::-1]


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


def _literal(value) -> str:
    """A Python literal as the project's formatter writes it (double-quoted strings)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def render_schedule(
    fixed: dict, knots: dict[str, list[tuple[float, float]]], switches: list | None = None
) -> str:
    """The three class attributes of a family: ``FIXED``, ``KNOTS`` (one line per knob, so a
    diff shows which moved) and ``SWITCHES``, indented for a class body."""
    fixed_text = ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in fixed.items())
    lines = [f"FIXED = {{{fixed_text}}}", "KNOTS = {"]
    for key, pts in knots.items():
        pts_text = ", ".join(f"({b!r}, {v!r})" for b, v in pts)
        lines.append(f"    {_literal(key)}: [{pts_text}],")
    lines.append("}")
    switch_text = ", ".join(
        f"({b!r}, {{{', '.join(f'{_literal(k)}: {_literal(v)}' for k, v in c.items())}}})"
        for b, c in switches or []
    )
    lines.append(f"SWITCHES = [{switch_text}]")
    return "\n".join(f"    {line}" for line in lines)


POLICY = "ComposableController"  # the policy class every family file subclasses
FAMILY_ATTRIBUTES = ("name", "description", "FIXED", "KNOTS", "SWITCHES")
DESCRIPTION = "width / depth / prune / EMA stop / weighted vote, piecewise-linear in beta"


def family_source(
    family: Family, name: str, header: str = "", class_name: str = "DiscoveredController"
) -> str:
    """A short controller file: a subclass of the composable policy (installed with autotts)
    that sets ``family``'s schedule, and nothing else."""
    body = [
        '"""A β-family of the composable policy (:class:`autotts.ComposableController`): the',
        'policy\'s rules live in the installed package; this file holds the schedule.\n"""',
        "",
        f"from autotts import {POLICY}",
        "",
        "",
        f"class {class_name}({POLICY}):",
        f"    name = {json.dumps(name)}",
        f"    description = {json.dumps(DESCRIPTION)}",
        "    # fmt: off",
        render_schedule(family.fixed, family.knots, family.switches),
        "    # fmt: on",
        "",
    ]
    return (header + "\n" if header else "") + "\n".join(body)


def is_family_file(path) -> bool:
    """Whether ``path`` is what :func:`family_source` writes: comments, a docstring, the
    policy's import and one subclass of it assigning literals to :data:`FAMILY_ATTRIBUTES`,
    whose schedule stays in the search space. Such a file is the installed policy with a
    schedule, so the compiled engine scores it from its ``params(beta)``; only trusted files
    (the run's own family) come here."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return False
    body = list(tree.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body.pop(0)  # the docstring
    if len(body) != 2:
        return False
    imported, cls = body
    if not (
        isinstance(imported, ast.ImportFrom)
        and imported.module == "autotts"
        and [(a.name, a.asname) for a in imported.names] == [(POLICY, None)]
        and isinstance(cls, ast.ClassDef)
        and [ast.unparse(b) for b in cls.bases] == [POLICY]
        and not cls.keywords
        and not cls.decorator_list
    ):
        return False
    for statement in cls.body:
        if not (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
            and statement.targets[0].id in FAMILY_ATTRIBUTES
        ):
            return False
        try:
            ast.literal_eval(statement.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return False
    return _schedule_in_space(cls)


def _schedule_in_space(cls: ast.ClassDef) -> bool:
    """Whether the class's schedule gives, at every β of the grid, a point of the search space
    (the compiled engine equals the policy there only): exactly the space's knobs, choices
    among its choices, numbers inside its ranges."""
    from .composable import ComposableController
    from .search_space import CHOICES

    values = {s.targets[0].id: ast.literal_eval(s.value) for s in cls.body}
    policy = type("Checked", (ComposableController,), values)
    try:
        for step in range(11):
            point = policy.schedule(step / 10)
            if set(point) != set(RANGES) | set(CHOICES) or normalize(point) != point:
                return False
            if any(point[name] not in options for name, options in CHOICES.items()):
                return False
    except (TypeError, ValueError, LookupError, ArithmeticError, AttributeError, RecursionError):
        return False
    return True
