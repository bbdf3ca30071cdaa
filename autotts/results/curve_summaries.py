"""One line per controller and environment summarising its whole accuracy-vs-tokens curve
(every setting it was swept over): the numbers TTS papers compare curves by.

- ``auc``: mean accuracy over the environment's common token range on a log axis (every
  curve on that environment is measured over the same range, from the largest of the curves'
  fewest tokens to the most tokens any curve spent; single points such as SC@64 do not
  move it);
- ``hypervolume``: area (accuracy × log10 tokens) its Pareto front dominates, from accuracy 0
  up to a token reference fixed per environment (``hypervolume_reference``): every branch of
  the store read in full, each probe priced once (:meth:`ReplayEnvironment.token_ceiling`),
  so one curve gets one value alone or in any comparison. Environments without a ceiling
  (reports built by hand) fall back to 1.1 × the most tokens any controller spent there;
- ``arise``: ARISE (arXiv 2510.06014) over its settings ordered by mean tokens;
- ``tokens_to_match``: the fewest tokens at which its curve reaches the baseline's accuracy
  (SC@64 by default), with a paired bootstrap interval; ``None`` when it never does. The
  baseline comes from the report, else from ``reference`` (the CLI passes SC@64 on the same
  environments and seeds from :mod:`autotts.evaluation.sc64_cache`).
"""

from __future__ import annotations

import math

import numpy as np

from .stats import area_under_log_curve, arise, hypervolume, joint_replicates, tokens_to_reach

BASELINE = ("sc", "n=64")


def curve_summaries(report, baseline: tuple[str, str] = BASELINE, reference=None) -> list[dict]:
    """The summaries (see the module docstring) of every controller with at least two valid
    settings on an environment, in the report's order; ``reference``: a report holding the
    ``baseline`` row on the same environments and seeds, read when ``report`` lacks it."""
    out = []
    for env_id in dict.fromkeys(r.env_id for r in report.rows):
        rows = [r for r in report.rows if r.env_id == env_id and r.status == "ok" and r.episodes]
        if not rows:
            continue
        curves = [c for c in _names(rows) if sum(r.controller == c for r in rows) > 1]
        if not curves:
            continue
        spans = [[r.tokens for r in rows if r.controller == c] for c in curves]
        low, high = max(min(s) for s in spans), max(max(s) for s in spans)
        base, holder = _baseline(report, rows, baseline, reference, env_id)
        ceiling = report.token_ceilings.get(env_id) or 1.1 * high
        for name in _names(rows):
            mine = sorted((r for r in rows if r.controller == name), key=lambda r: r.tokens)
            if len(mine) < 2:
                continue
            points = [(r.tokens, r.accuracy) for r in mine]
            summary = {
                "controller": name,
                "env": env_id,
                "settings": len(mine),
                "auc": area_under_log_curve(points, low, high) if low < high else None,
                "hypervolume": hypervolume(points, ceiling),
                "hypervolume_reference": ceiling,
                "arise": _arise(report, mine),
                "tokens_to_match": None,
                "tokens_to_match_interval": None,
            }
            if base is not None and name != baseline[0]:
                summary["tokens_to_match"] = tokens_to_reach(points, base.accuracy)
                summary["tokens_to_match_interval"] = _match_interval(report, mine, holder, base)
            out.append(summary)
    return out


def _baseline(report, rows, baseline, reference, env_id):
    """The baseline row on ``env_id`` and the report holding it (``(None, None)``: none)."""
    for holder, candidates in ((report, rows), (reference, reference and reference.rows)):
        for row in candidates or ():
            usable = row.episodes and row.status == "ok" and holder.seeds == report.seeds
            if usable and (row.controller, row.setting, row.env_id) == (*baseline, env_id):
                return row, holder
    return None, None


def _names(rows) -> list[str]:
    return list(dict.fromkeys(r.controller for r in rows))


def _arise(report, rows) -> float:
    accuracy, tokens = [], []
    for row in rows:
        correct, spent = report.outcomes(row)
        accuracy.append(np.mean(np.asarray(correct, dtype=float), axis=1))
        tokens.append(np.mean(np.asarray(spent, dtype=float), axis=1))
    return arise(np.stack(accuracy, axis=1), np.maximum(np.stack(tokens, axis=1), 1.0))


def _match_interval(report, rows, holder, base) -> list[float] | None:
    """Paired bootstrap interval of the tokens at which ``rows``' curve reaches ``base``'s
    accuracy (``holder``: the report holding ``base``; replicates where it never does count
    as infinitely many tokens)."""
    groups = {}
    for i, row in enumerate([*rows, base]):
        correct, spent = (holder if row is base else report).outcomes(row)
        groups[(i, "acc")] = [100.0 * np.asarray(correct, dtype=float)]
        groups[(i, "tok")] = [np.asarray(spent, dtype=float)]
    reps = joint_replicates(groups)
    target = reps[(len(rows), "acc")]
    values = []
    for r in range(len(target)):
        curve = [(reps[(i, "tok")][r], reps[(i, "acc")][r]) for i in range(len(rows))]
        reached = tokens_to_reach(curve, target[r])
        values.append(math.inf if reached is None else reached)
    # no interpolation between order statistics: they may be infinite
    low, high = np.percentile(values, [2.5, 97.5], method="nearest")
    return [float(low), float(high)]


__all__ = ["BASELINE", "curve_summaries"]
