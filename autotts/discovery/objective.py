"""The one objective of LLM discovery: accuracy against CMC at equal tokens, paired.

A round's candidate is scored by the criterion the held-out verdict reports first
(:func:`autotts.discovery.verdict.judge`, "Accuracy vs CMC at equal tokens"): the mean, over
the candidate's β settings whose mean tokens fall inside CMC's token range on the search
environments (CMC β=0 to β=1, the same range for every candidate), of the candidate's
accuracy minus CMC's accuracy at the same tokens (CMC's curve interpolated in log tokens).
Its interval is a paired bootstrap: the candidate and CMC resampled over the same questions
and seeds. A candidate with no setting inside the range has no score and ranks below every
scored one, so a cheaper β=0 below CMC's range neither helps nor hurts: only being above CMC
where both spend the same counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..evaluation.evaluator import DEFAULT_BETAS, RunConfig
from .verdict import (
    margin_interval,
    margins_vs_cmc,
    outcome_tables,
    paired_replicates,
    window,
    window_interval,
)


@dataclass
class CMCReference:
    """CMC's β curve on the search environments and its outcome tables (per β, per
    environment, ``(questions, seeds)``) on the seeds candidates are evaluated with."""

    curve: list[dict]
    tables: list[tuple[list, list]]

    @property
    def token_range(self) -> tuple[float, float]:
        tokens = [p["tokens"] for p in self.curve]
        return min(tokens), max(tokens)


def cmc_reference(env_ids: list[str], seeds: int, env_dir=None) -> CMCReference:
    """CMC on ``env_ids`` with ``seeds`` seeds (the compiled policy: equal to the ``cmc``
    controller episode by episode)."""
    from .scoring import evaluate_composable
    from .search_space import cmc_point
    from .stages import _curve

    configs = [RunConfig("cmc", beta=b) for b in DEFAULT_BETAS]
    report = evaluate_composable(
        configs, [cmc_point(b) for b in DEFAULT_BETAS], env_ids, seeds, env_dir=env_dir
    )
    tables = []
    for config in configs:
        rows = [r for r in report.rows if r.config == config]
        tables.append(outcome_tables(report, sorted(rows, key=lambda r: env_ids.index(r.env_id))))
    return CMCReference(_curve(report, "cmc", env_ids), tables)


def score_against_cmc(
    curve: list[dict], tables: list, reference: CMCReference, windows=(), reps=None
) -> dict:
    """The objective of one candidate: ``curve`` (β points with mean ``accuracy`` and
    ``tokens``) and its outcome tables, on the reference's environments and seeds.

    Returns ``{"margin", "interval", "compared", "range", "windows"}``: the mean margin in
    accuracy points (``None`` when no setting falls inside CMC's range), its 95 % paired
    interval, the settings compared and CMC's token range; with ``windows`` (``(share,
    tokens)`` budget caps, ``--target``), per window the candidate's most accurate setting
    within the cap against CMC's, with the paired interval of the difference (reported
    beside the margin; the margin alone ranks). ``reps``: joint replicates of these tables
    already drawn (:func:`~autotts.discovery.verdict.paired_replicates`)."""
    family, cmc = as_settings(curve), as_settings(reference.curve)
    margins = margins_vs_cmc(family, cmc)
    low, high = reference.token_range
    scored = {"margin": None, "interval": None, "compared": [], "range": [low, high]}
    if reps is None:
        reps = paired_replicates(tables, reference.tables)
    scored["windows"] = [
        {"tokens": cap, **window_interval(window(family, cmc, share, cap), reps)}
        for share, cap in windows
    ]
    if not margins:
        return scored
    estimate = margin_interval(family, cmc, reps, margins)
    scored.update(
        margin=estimate.mean,
        interval=[estimate.low, estimate.high],
        compared=[m["setting"] for m in margins],
    )
    return scored


def as_settings(curve: list[dict]) -> list[dict]:
    """A β curve as the verdict's settings (``setting`` named ``β=…``, ``accuracy``,
    ``tokens``)."""
    return [
        {"setting": f"β={p['beta']:g}", "accuracy": p["accuracy"], "tokens": p["tokens"]}
        for p in curve
    ]


def ranking_key(record: dict) -> tuple:
    """Sort key of a recorded round (higher is better): scored rounds by their margin, then
    by the lower end of its interval; unscored ones last."""
    margin = record.get("score")
    if margin is None:
        return (0, 0.0, 0.0)
    interval = record.get("score_interval") or [margin, margin]
    return (1, margin, interval[0])


def describe(scored: dict) -> str:
    """The objective in words, for the prompt and the round's lesson."""
    low, high = scored["range"]
    if scored["margin"] is None:
        return (
            f"no score: no β setting's mean tokens fall inside CMC's range "
            f"({low / 1000:.1f}k–{high / 1000:.1f}k)"
        )
    a, b = scored["interval"]
    text = (
        f"{scored['margin']:+.2f} points vs CMC at equal tokens (95% interval [{a:+.2f}, "
        f"{b:+.2f}], over {', '.join(scored['compared'])})"
    )
    for w in scored.get("windows") or ():
        where = f"within {100 * w['share']:.0f}% of SC@64's tokens ({w['tokens'] / 1000:.1f}k)"
        if w.get("difference") is None:
            text += f"; {where}: no setting of yours or CMC's"
        else:
            m, lo, hi = w["difference"]
            pair = f"{w['family_setting']} vs CMC {w['cmc_setting']}"
            text += f"; {where}: {pair} {m:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    return text


__all__ = ["CMCReference", "as_settings", "cmc_reference", "describe", "ranking_key",
           "score_against_cmc"]  # fmt: skip
