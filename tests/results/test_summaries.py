"""Whole-curve summaries computed from a real evaluation."""

import numpy as np
import pytest

import autotts
from autotts.results.curve_summaries import curve_summaries
from autotts.results.stats import arise


def test_curve_summaries_of_cmc_against_sc64(env_dir):
    report = autotts.evaluate(
        ["cmc@beta=0,0.5,1", "sc@n=1,8,64"], "Qwen3-8B/aime24", seeds=5, env_dir=env_dir
    )
    by_name = {s["controller"]: s for s in curve_summaries(report)}
    cmc, sc = by_name["cmc"], by_name["sc"]
    assert cmc["settings"] == sc["settings"] == 3
    assert 0 < cmc["auc"] <= 100 and cmc["hypervolume"] > 0
    low, high = cmc["tokens_to_match_interval"]
    assert cmc["tokens_to_match"] is not None and low <= cmc["tokens_to_match"] <= high
    assert sc["tokens_to_match"] is None  # the baseline is not compared with itself
    # ARISE from the per-question table, by hand
    rows = sorted((r for r in report.rows if r.controller == "cmc"), key=lambda r: r.tokens)
    per_q = {(q["setting"], q["question"]): q for q in report.per_question()}
    acc = np.array([[per_q[(r.setting, q)]["accuracy"] / 100 for r in rows] for q in range(30)])
    tok = np.array([[per_q[(r.setting, q)]["mean_tokens"] for r in rows] for q in range(30)])
    assert cmc["arise"] == pytest.approx(arise(acc, tok))
