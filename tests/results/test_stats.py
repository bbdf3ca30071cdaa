"""Intervals, paired verdicts and curve summaries on cases worked out by hand."""

import math

import numpy as np
import pytest

from autotts.results.stats import (
    area_under_log_curve,
    arise,
    estimate,
    hypervolume,
    non_inferiority,
    paired_by_question,
    paired_difference,
    superiority,
    tokens_to_reach,
)


def test_a_constant_table_has_no_uncertainty():
    e = estimate([np.full((10, 5), 0.7)])
    assert e.mean == pytest.approx(0.7) and e.se == pytest.approx(0, abs=1e-12)
    assert e.low == pytest.approx(0.7) and e.high == pytest.approx(0.7)


def test_intervals_cover_the_truth_and_shrink_with_more_questions():
    rng = np.random.default_rng(1)
    small = estimate([(rng.random((10, 20)) < 0.6).astype(float)])
    large = estimate([(rng.random((160, 20)) < 0.6).astype(float)])
    assert small.low < 0.6 < small.high and large.low < 0.6 < large.high
    assert large.high - large.low < (small.high - small.low) / 2
    # several environments: the mean of their means, each weighing the same
    two = estimate([np.ones((5, 4)), np.zeros((30, 4))])
    assert two.mean == pytest.approx(0.5)


def test_paired_verdicts_follow_the_interval():
    rng = np.random.default_rng(7)
    base = (rng.random((30, 20)) < 0.5).astype(float)
    better = np.maximum(base, (rng.random((30, 20)) < 0.3).astype(float))  # ≈ +15 points
    verdict = superiority(paired_difference([better * 100], [base * 100]))
    assert verdict.kind == "beats" and verdict.difference.low > 0
    assert superiority(paired_difference([base * 100], [better * 100])).kind == "worse"
    one_flip = base.copy()
    one_flip[0, 0] = 1 - one_flip[0, 0]  # a single episode differs: nothing to conclude
    same = superiority(paired_difference([one_flip * 100], [base * 100]))
    assert same.kind == "no significant difference" and not same.significant
    assert "no significant difference (difference" in str(same)
    # pairing matters: the same marginal numbers unpaired would be far wider
    assert non_inferiority(paired_difference([base * 100], [base * 100]), 0.5).kind == "matches"
    assert non_inferiority(paired_difference([base * 100], [better * 100]), 0.5).kind == (
        "does not match"
    )
    with pytest.raises(ValueError, match="same questions and seeds"):
        paired_difference([base], [base[:, :10]])


def test_live_against_replay_pairs_questions_not_seeds():
    """Two seeds live, 100 on replay, over the same questions: the questions are resampled
    together (so questions both sides find easy or hard cancel out), each side's seeds apart."""
    rng = np.random.default_rng(3)
    easy = (rng.random(40) < 0.5).astype(float)[:, None]  # each question always or never solved
    live, replay = np.repeat(easy, 2, axis=1), np.repeat(easy, 100, axis=1)
    same = paired_by_question(live, replay)
    assert same.mean == 0 and same.low == 0 and same.high == 0  # unpaired: ±15 points
    assert superiority(same).kind == "no significant difference"
    noisy = (rng.random((40, 100)) < 0.5).astype(float)
    wider = paired_by_question(live, noisy)  # the seeds of each side resampled: not zero
    assert wider.low < wider.mean < wider.high
    assert superiority(paired_by_question(np.ones((40, 2)), noisy)).kind == "beats"
    # the same table on both sides is not the same episodes: seeds drawn apart, not zero
    apart = paired_by_question(noisy, noisy)
    assert apart.mean == 0 and apart.low < 0 < apart.high
    with pytest.raises(ValueError, match="same questions"):
        paired_by_question(live[:30], replay)


def test_arise_by_hand():
    # q1: 0 → 1 (100 → 200 tokens) gains 1 · (100/200)^1 = 0.5, then no change: 0.5
    # q2: 1 → 0 at equal cost loses 1 · (100/100)^-1 = 1, then 0 → 1 (100 → 300) gains 1/3
    accuracy = np.array([[0, 1, 1], [1, 0, 1]])
    tokens = np.array([[100, 200, 400], [100, 100, 300]])
    assert arise(accuracy, tokens) == pytest.approx((0.5 + (-1 + 1 / 3)) / 2)
    # a loss bought with more tokens weighs more than the same loss for free
    assert arise(np.array([[1, 0]]), np.array([[100, 200]])) == pytest.approx(-2.0)


def test_curve_summaries():
    curve = [(1000, 50.0), (10_000, 70.0), (100_000, 80.0), (50_000, 60.0)]
    assert tokens_to_reach(curve, 70.0) == pytest.approx(10_000)
    assert tokens_to_reach(curve, 60.0) == pytest.approx(math.sqrt(1000 * 10_000))
    assert tokens_to_reach(curve, 90.0) is None
    flat = [(1000, 50.0), (1_000_000, 50.0)]
    assert area_under_log_curve(flat, 1000, 1_000_000) == pytest.approx(50.0)
    assert area_under_log_curve([(1_000_000, 50.0)], 1000, 1_000_000) < 1.0  # 0 before it
    # two Pareto points, reference at 10^6 tokens: 50·(6-3) + (80-50)·(6-5) = 180
    assert hypervolume([(1000, 50.0), (100_000, 80.0), (200_000, 70.0)], 1e6) == (
        pytest.approx(180.0)
    )
