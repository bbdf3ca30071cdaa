"""The LLM rounds' objective is the verdict's criterion: accuracy over CMC at equal tokens,
paired over the same questions and seeds; a cheaper β=0 alone does not win."""

import numpy as np
import pytest

from autotts.discovery.family import curve_score
from autotts.discovery.objective import CMCReference, describe, ranking_key, score_against_cmc
from autotts.discovery.verdict import judge

ENVS, QUESTIONS, SEEDS = 2, 30, 40
BETAS = [round(0.1 * i, 1) for i in range(11)]
CMC_TOKENS = np.geomspace(50_000, 480_000, 11)
CMC_ACCURACY = np.linspace(0.55, 0.65, 11)


def tables_of(accuracy: float, tokens: float, seed: int) -> tuple[list, list]:
    """Per environment ``(questions, seeds)`` outcome tables near ``accuracy`` (a share)
    and ``tokens``; the same ``seed`` gives the same episodes (how pairing works)."""
    rng = np.random.default_rng(seed)
    correct, spent = [], []
    for _ in range(ENVS):
        draw = rng.random((QUESTIONS, SEEDS))
        correct.append(100.0 * (draw < accuracy))
        spent.append(tokens * (0.9 + 0.2 * rng.random((QUESTIONS, SEEDS))))
    return correct, spent


def curve_of(tables: list, betas=BETAS) -> list[dict]:
    return [
        {
            "beta": beta,
            "accuracy": float(np.mean([t.mean() for t in accuracy])),
            "tokens": float(np.mean([t.mean() for t in tokens])),
        }
        for beta, (accuracy, tokens) in zip(betas, tables, strict=True)
    ]


@pytest.fixture(scope="module")
def cmc():
    points = enumerate(zip(CMC_ACCURACY, CMC_TOKENS, strict=True))
    tables = [tables_of(a, t, seed=i) for i, (a, t) in points]
    return CMCReference(curve_of(tables), tables)


def candidate(shift: float, cheap_start: bool = False):
    """CMC's settings with ``shift`` more accuracy (same episodes otherwise), and optionally
    a β=0 at a fifth of CMC's cheapest tokens."""
    tables = []
    for i, (a, t) in enumerate(zip(CMC_ACCURACY, CMC_TOKENS, strict=True)):
        if i == 0 and cheap_start:
            tables.append(tables_of(a - 0.03, t / 5, seed=100))
        else:
            tables.append(tables_of(a + shift, t, seed=i))
    return curve_of(tables), tables


def test_above_cmc_at_equal_tokens_beats_a_cheaper_start(cmc):
    above, cheap = candidate(0.05), candidate(0.0, cheap_start=True)
    above_score = score_against_cmc(*above, cmc)
    cheap_score = score_against_cmc(*cheap, cmc)
    # the old round score (area under accuracy vs log tokens from the curve's own cheapest
    # point) preferred the cheaper start; the objective does not
    assert curve_score(cheap[0]) > curve_score(above[0])
    assert ranking_key({"score": above_score["margin"], "score_interval": above_score["interval"]}) > (
        ranking_key({"score": cheap_score["margin"], "score_interval": cheap_score["interval"]})
    )  # fmt: skip
    assert above_score["interval"][0] > 0  # paired: the shift is shown, not noise
    assert "β=0" not in cheap_score["compared"]  # below CMC's range: not compared
    assert "points vs CMC at equal tokens" in describe(above_score)


def test_the_objective_is_the_verdicts_margin(cmc):
    """Same inputs, same number and interval as the held-out verdict's CMC margin."""
    curve, tables = candidate(0.02)
    sc_tables = tables_of(0.66, 900_000, seed=7)
    sc = curve_of([sc_tables], [None])[0]
    windows = [(share, share * sc["tokens"]) for share in (0.30, 0.55)]
    scored = score_against_cmc(curve, tables, cmc, windows)
    family = [{"setting": f"β={p['beta']:g}", **p} for p in curve]
    cmc_curve = [{"setting": f"β={p['beta']:g}", **p} for p in cmc.curve]
    verdict = judge(family, cmc_curve, sc, {"winner": tables, "cmc": cmc.tables, "sc64": sc_tables})
    assert [scored["margin"], *scored["interval"]] == pytest.approx(verdict["margin_vs_cmc"])
    # the budget windows: the same settings and paired differences as the verdict's
    for mine, theirs in zip(scored["windows"], verdict["windows"], strict=True):
        assert (mine["family_setting"], mine["cmc_setting"]) == (
            theirs["family_setting"], theirs["cmc_setting"],
        )  # fmt: skip
        assert mine["difference"] == pytest.approx(theirs["difference"])
    assert "within 30% of SC@64's tokens" in describe(scored)


def test_a_curve_outside_cmcs_range_has_no_score_and_ranks_last(cmc):
    tables = [tables_of(0.9, 5_000, seed=i) for i in range(11)]
    scored = score_against_cmc(curve_of(tables), tables, cmc)
    assert scored["margin"] is None and "no score" in describe(scored)
    assert ranking_key({"score": None}) < ranking_key({"score": -50.0})
