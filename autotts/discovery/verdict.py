"""The acceptance verdict of a discovered family against SC@64 and CMC, with its uncertainty.

Two targets, each judged on the point estimates *and* on paired bootstrap intervals (the
family and the baselines resampled over the same questions and seeds, see
:mod:`autotts.results.stats`):

- **SC@64 at ≤ 35 % of its tokens**: the cheapest family setting whose accuracy is within
  ``MATCH_MARGIN`` points of SC@64's. ``matches_sc64`` holds only when the interval of the
  difference shows it (its lower end ≥ −margin), ``matches_sc64_within_35pct`` on the means;
- **CMC at equal tokens**: the family's mean accuracy margin over CMC's curve (interpolated
  in log tokens). ``beats_cmc`` holds only when the margin's interval lies above zero,
  ``ahead_of_cmc`` on the means;
- **budget windows** (``WINDOWS``: 30 % and 55 % of SC@64's tokens): in each, the family's
  most accurate setting within the window against CMC's (both chosen on the means), with the
  paired interval of their difference; ``beats_cmc`` per window only when it lies above zero.

Words for a verdict come from :func:`autotts.discovery.run_report.verdict_lines`: "beats" and
"matches" only where the interval supports them, "no significant difference" otherwise.
"""

from __future__ import annotations

import numpy as np

from ..results.stats import CONFIDENCE, accuracy_at, interval_of, joint_replicates

MATCH_MARGIN = 0.5  # accuracy points
TOKEN_SHARE = 0.35  # of SC@64's tokens
WINDOWS = (0.30, 0.55)  # budget windows, shares of SC@64's tokens


def outcome_tables(report, rows) -> tuple[list, list]:
    """Per-environment ``(questions, seeds)`` tables of accuracy (percent) and tokens of
    evaluation ``rows`` (one configuration, one row per environment)."""
    accuracy, tokens = [], []
    for row in rows:
        correct, spent = report.outcomes(row)
        accuracy.append(100.0 * np.asarray(correct, dtype=float))
        tokens.append(np.asarray(spent, dtype=float))
    return accuracy, tokens


def judge(family: list[dict], cmc: list[dict], sc: dict, tables: dict | None = None) -> dict:
    """The verdict dict (recorded in ``search.json``/``heldout.json``). ``tables``:
    ``{"winner": [(accuracy, tokens) per family point], "cmc": [… per CMC point],
    "sc64": (accuracy, tokens)}`` with per-environment outcome tables (see
    :func:`outcome_tables`); without it only the point estimates are judged."""
    matching = [p for p in family if p["accuracy"] >= sc["accuracy"] - MATCH_MARGIN]
    cheapest = min(matching, key=lambda p: p["tokens"]) if matching else None
    token_share = cheapest["tokens"] / sc["tokens"] if cheapest else None
    margins = margins_vs_cmc(family, cmc)
    mean_margin = sum(m["delta"] for m in margins) / len(margins) if margins else None
    windows = _windows_of(family, cmc, sc)
    verdict = {
        "sc64_accuracy": sc["accuracy"],
        "sc64_tokens": sc["tokens"],
        "cheapest_matching_sc64": cheapest and cheapest["setting"],
        "token_share_of_sc64": token_share,
        "matches_sc64_within_35pct": token_share is not None and token_share <= TOKEN_SHARE,
        "vs_cmc_at_equal_tokens": margins,
        "mean_margin_vs_cmc": mean_margin,
        "ahead_of_cmc": mean_margin is not None and mean_margin > 0,
        "windows": windows,
        "confidence": CONFIDENCE,
        "match_margin": MATCH_MARGIN,
        # decided by the intervals below; without outcome tables nothing is claimed
        "matches_sc64": False,
        "beats_cmc": False,
    }
    if tables is not None and family:
        verdict.update(_with_intervals(family, cmc, sc, tables, margins, windows))
    return verdict


def margins_vs_cmc(family: list[dict], cmc: list[dict]) -> list[dict]:
    """Each family setting whose mean tokens fall inside CMC's token range: its accuracy minus
    CMC's at the same tokens (CMC's curve interpolated in log tokens)."""
    margins = []
    for p in family:
        cmc_acc = accuracy_at(_points(cmc), p["tokens"])
        if cmc_acc is not None:
            margins.append(
                {"setting": p["setting"], "tokens": p["tokens"], "delta": p["accuracy"] - cmc_acc}
            )
    return margins


def margin_interval(family: list[dict], cmc: list[dict], reps: dict, margins: list[dict]):
    """The mean of ``margins`` (:func:`margins_vs_cmc`, not empty) with its paired interval:
    the margin recomputed in every joint replicate ``reps`` of the family's
    (``("winner", i, "acc"/"tok")``) and CMC's (``("cmc", j, …)``) outcome tables."""
    compared = {m["setting"] for m in margins}  # the points inside CMC's token range
    used = [i for i, p in enumerate(family) if p["setting"] in compared]
    replicate_margins = []
    for r in range(len(reps[("cmc", 0, "acc")])):
        curve = [(reps[("cmc", j, "tok")][r], reps[("cmc", j, "acc")][r]) for j in range(len(cmc))]
        deltas = []
        for i in used:
            at = accuracy_at(curve, reps[("winner", i, "tok")][r])
            if at is not None:
                deltas.append(reps[("winner", i, "acc")][r] - at)
        replicate_margins.append(np.mean(deltas) if deltas else np.nan)
    values = np.asarray(replicate_margins)
    mean = sum(m["delta"] for m in margins) / len(margins)
    return interval_of(mean, values[~np.isnan(values)])


def window(family: list[dict], cmc: list[dict], share: float, cap: float) -> dict:
    """The most accurate family and CMC settings (on the means) within ``cap`` tokens, the
    budget window at ``share`` of SC@64's tokens; their difference without its interval."""

    def best(curve):
        inside = [i for i, p in enumerate(curve) if p["tokens"] <= cap]
        return max(inside, key=lambda i: curve[i]["accuracy"]) if inside else None

    i, j = best(family), best(cmc)
    chosen = {"share": share, "family": i, "cmc": j, "beats_cmc": False}
    for key, curve, index in (("family", family, i), ("cmc", cmc, j)):
        if index is not None:
            chosen[f"{key}_setting"] = curve[index]["setting"]
            chosen[f"{key}_accuracy"] = curve[index]["accuracy"]
    if i is not None and j is not None:
        chosen["difference"] = [family[i]["accuracy"] - cmc[j]["accuracy"], None, None]
    return chosen


def window_interval(chosen: dict, reps: dict) -> dict:
    """A :func:`window` with the paired interval of its difference, from joint replicates
    ``reps`` (:func:`paired_replicates`), and whether it shows the family ahead."""
    chosen = dict(chosen)
    if chosen.get("difference"):
        i, j = chosen["family"], chosen["cmc"]
        diff = interval_of(
            chosen["difference"][0], reps[("winner", i, "acc")] - reps[("cmc", j, "acc")]
        )
        chosen["difference"] = [diff.mean, diff.low, diff.high]
        chosen["beats_cmc"] = diff.low > 0
    return chosen


def paired_replicates(winner: list, cmc: list, sc64: tuple | None = None) -> dict:
    """Joint bootstrap replicates of a family's (``winner``), CMC's and optionally SC@64's
    outcome tables (per setting ``(accuracy, tokens)``, see :func:`outcome_tables`), keyed
    ``(label, index, "acc"/"tok")``: every key resampled over the same questions and seeds."""
    groups = {}
    for label, points in (("winner", winner), ("cmc", cmc)):
        for i, (accuracy, tokens) in enumerate(points):
            groups[(label, i, "acc")], groups[(label, i, "tok")] = accuracy, tokens
    if sc64 is not None:
        groups[("sc64", 0, "acc")], groups[("sc64", 0, "tok")] = sc64
    return joint_replicates(groups)


def _windows_of(family, cmc, sc) -> list[dict]:
    return [window(family, cmc, share, share * sc["tokens"]) for share in WINDOWS]


def _points(curve: list[dict]) -> list[tuple[float, float]]:
    return [(p["tokens"], p["accuracy"]) for p in curve]


def _with_intervals(family, cmc, sc, tables, margins, windows) -> dict:
    reps = paired_replicates(tables["winner"], tables["cmc"], tables["sc64"])
    sc_acc = reps[("sc64", 0, "acc")]
    # SC@64: the cheapest family setting shown to be at most MATCH_MARGIN points worse
    shown = []
    for i, p in enumerate(family):
        diff = interval_of(p["accuracy"] - sc["accuracy"], reps[("winner", i, "acc")] - sc_acc)
        if diff.low >= -MATCH_MARGIN:
            shown.append((p["tokens"], p["setting"], diff))
    best = min(shown, key=lambda s: s[0]) if shown else None
    share = best[0] / sc["tokens"] if best else None
    result: dict = {
        "sc64_shown_match": best
        and {
            "setting": best[1],
            "token_share": share,
            "difference": [best[2].mean, best[2].low, best[2].high],
        },
        "matches_sc64": share is not None and share <= TOKEN_SHARE,
    }
    # budget windows: the chosen pair's paired difference
    result["windows"] = [window_interval(w, reps) for w in windows]
    # CMC: the mean margin at equal tokens, recomputed in every replicate
    if margins:
        margin = margin_interval(family, cmc, reps, margins)
        result["margin_vs_cmc"] = [margin.mean, margin.low, margin.high]
        result["beats_cmc"] = margin.low > 0
        result["worse_than_cmc"] = margin.high < 0
    return result


__all__ = [
    "MATCH_MARGIN",
    "TOKEN_SHARE",
    "WINDOWS",
    "judge",
    "margin_interval",
    "margins_vs_cmc",
    "outcome_tables",
    "paired_replicates",
    "window",
    "window_interval",
]
