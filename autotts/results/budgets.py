"""Accuracy at matched budgets: every controller's curve read at fixed shares of a baseline's
tokens — the table users compare TTS methods by ("accuracy at 25 %, 50 %, 100 % of SC@64's
tokens").

A controller's curve is its settings' mean accuracy against mean tokens over the report's
environments (each environment weighing the same); its accuracy at a budget is the curve's
upper envelope interpolated linearly in log tokens (:func:`autotts.results.stats.accuracy_at`), held
flat beyond its most expensive setting (a controller need not spend the whole budget), and
``None`` below its cheapest setting. The interval comes from
the paired two-level bootstrap of :mod:`autotts.results.stats`: in every replicate the baseline's
tokens, each setting's accuracy and tokens are recomputed on the same resampled episodes and
the curve is read again, so the budget itself carries its uncertainty. ``reach`` is the share
of replicates whose curve spans the budget; the interval is over those.
"""

from __future__ import annotations

import numpy as np

from .curve_summaries import BASELINE
from .stats import accuracy_at, interval_of, joint_replicates

SHARES = (0.25, 0.5, 1.0)
REACH = 0.95  # replicates whose curve must reach a budget for an unflagged interval


def _ok_rows(report, env_ids):
    """``{controller: {setting: [row per environment]}}`` for settings valid everywhere."""
    table: dict[str, dict[str, dict]] = {}
    for row in report.rows:
        if row.env_id in env_ids and row.status == "ok" and row.episodes:
            table.setdefault(row.controller, {}).setdefault(row.setting, {})[row.env_id] = row
    return {
        name: {
            s: [rows[e] for e in env_ids]
            for s, rows in settings.items()
            if len(rows) == len(env_ids)
        }
        for name, settings in table.items()
    }


def _accuracy_within(points, tokens: float) -> float | None:
    """The curve's accuracy with at most ``tokens`` (see the module docstring)."""
    if points and tokens >= max(t for t, _ in points):
        return max(a for _, a in points)
    return accuracy_at(points, tokens)


def matched_budgets(report, shares=SHARES, baseline: tuple[str, str] = BASELINE) -> list[dict]:
    """One dict per controller: ``{"controller", "settings", "at": [{"share", "tokens",
    "accuracy", "low", "high", "reach"} per share], "best": {"setting",
    "accuracy", "low", "high", "share"}}`` (``best``: its most accurate setting, ``share`` its
    tokens as a share of the baseline's) (see the module docstring); the baseline's own
    setting is one of the report's rows (``("sc", "n=64")`` by default). Raises
    ``ValueError`` when the report has no valid baseline row on every environment."""
    env_ids = list(dict.fromkeys(r.env_id for r in report.rows))
    curves = _ok_rows(report, env_ids)
    base_rows = curves.get(baseline[0], {}).get(baseline[1])
    if not base_rows:
        raise ValueError(
            f"matched budgets need {baseline[0]}@{baseline[1]} on every environment "
            f"({', '.join(env_ids)}); add it to the compared controllers"
        )
    groups = {}

    def add(key, rows):
        correct, tokens = zip(*(report.outcomes(row) for row in rows), strict=True)
        groups[(*key, "acc")] = [100.0 * np.asarray(c, dtype=float) for c in correct]
        groups[(*key, "tok")] = [np.asarray(t, dtype=float) for t in tokens]

    add(("baseline",), base_rows)
    for name, settings in curves.items():
        for setting, rows in settings.items():
            add((name, setting), rows)
    reps = joint_replicates(groups)
    means = {key: float(np.mean([t.mean() for t in tables])) for key, tables in groups.items()}
    budget, budget_reps = means[("baseline", "tok")], reps[("baseline", "tok")]
    out = []
    for name, settings in curves.items():
        keys = list(settings)
        point = [(means[(name, s, "tok")], means[(name, s, "acc")]) for s in keys]
        at = []
        for share in shares:
            accuracy = _accuracy_within(point, share * budget)
            entry = {"share": share, "tokens": share * budget, "accuracy": accuracy,
                     "low": None, "high": None, "reach": 0.0}  # fmt: skip
            if accuracy is not None:
                values = []
                for r in range(len(budget_reps)):
                    curve = [(reps[(name, s, "tok")][r], reps[(name, s, "acc")][r]) for s in keys]
                    values.append(_accuracy_within(curve, share * budget_reps[r]))
                known = np.array([v for v in values if v is not None])
                entry["reach"] = len(known) / len(values)
                if len(known):
                    entry["low"], entry["high"] = interval_of(accuracy, known).interval
            at.append(entry)
        top = max(keys, key=lambda k: means[(name, k, "acc")])
        low, high = interval_of(means[(name, top, "acc")], reps[(name, top, "acc")]).interval
        best = {"setting": top, "accuracy": means[(name, top, "acc")], "low": low,
                "high": high, "share": means[(name, top, "tok")] / budget}  # fmt: skip
        out.append({"controller": name, "settings": len(keys), "at": at, "best": best})
    return out


def budgets_markdown(rows: list[dict], baseline: tuple[str, str] = BASELINE) -> str:
    """The matched-budget table as Markdown: one line per controller, one column per share."""
    shares = [a["share"] for a in rows[0]["at"]] if rows else []
    head = ["controller", "settings"] + [
        f"{100 * s:g} % of {baseline[0]}@{baseline[1]}'s tokens" for s in shares
    ]
    head.append("most accurate setting (tokens)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["controller"], str(row["settings"])]
        for a in row["at"]:
            if a["accuracy"] is None:
                cells.append("-")
            else:
                mark = "" if a["reach"] >= REACH else " †"
                cells.append(f"{a['accuracy']:.2f} [{a['low']:.2f}, {a['high']:.2f}]{mark}")
        b = row["best"]
        cells.append(
            f"{b['setting']}: {b['accuracy']:.2f} [{b['low']:.2f}, {b['high']:.2f}] "
            f"({100 * b['share']:.0f} %)"
        )
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"\n† the curve ends near this budget: fewer than {REACH:.0%} of the bootstrap replicates "
        "reach it, and the interval is over those that do.\n"
    )
    reached = all(a["reach"] >= REACH for r in rows for a in r["at"] if a["accuracy"] is not None)
    return "\n".join(lines) + "\n" + ("" if reached else note)


__all__ = ["SHARES", "budgets_markdown", "matched_budgets"]
