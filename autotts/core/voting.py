"""Aggregation helpers shared by controllers: majority and weighted votes, and the ASC stopping
confidence."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import cache
from itertools import accumulate
from math import comb


def majority(answers: Iterable[str]) -> str | None:
    """The most common answer; ties go to the answer seen first. ``None`` when empty."""
    counts = Counter(answers)
    if not counts:
        return None
    return max(counts, key=counts.__getitem__)


def weighted_majority(answers: Iterable[str], weights: Iterable[float]) -> tuple[str | None, float]:
    """The answer with the largest total weight (ties: first seen) and its share of the total
    weight (1.0 when every weight is 0); ``(None, 0.0)`` when empty."""
    totals: dict[str, float] = {}
    for answer, weight in zip(answers, weights, strict=True):
        totals[answer] = totals.get(answer, 0.0) + weight
    if not totals:
        return None, 0.0
    best = max(totals, key=totals.__getitem__)
    mass = sum(totals.values())
    return best, totals[best] / mass if mass > 0 else 1.0


def top_two(counts: dict) -> tuple[str | None, int, int]:
    """``(leader, leader_count, runner_up_count)`` of a vote count dict (first-seen wins ties)."""
    if not counts:
        return None, 0, 0
    leader = max(counts, key=counts.__getitem__)
    if len(counts) == 1:
        return leader, counts[leader], 0
    first, second = sorted(counts.values(), reverse=True)[:2]
    return leader, first, second


@cache
def beta_confidence(top1: int, top2: int) -> float:
    """Posterior probability that the leader beats the runner-up: ``1 - I_0.5(top1+1, top2+1)``.

    ``I_x(a, b)`` is the regularised incomplete beta function; for integer arguments it equals
    ``P(Binomial(a+b-1, x) >= a)``, computed here exactly (and cached), so it needs no SciPy.
    """
    a, b = top1 + 1, top2 + 1
    n = a + b - 1
    tail = sum(comb(n, j) for j in range(a, n + 1))
    return 1.0 - tail / 2**n


@cache
def beta_confidence_table(size: int):
    """:func:`beta_confidence` for every pair of vote counts below ``size`` (``top2 <= top1``)
    as an array (for vectorised engines): the same exact integer tails and the same division,
    the tails taken from suffix sums of each binomial row instead of one sum per pair."""
    import numpy as np

    table = np.zeros((size, size))
    row = [1]  # comb(n, j) for j = 0..n
    for n in range(1, 2 * size):
        row = [1, *(row[j - 1] + row[j] for j in range(1, n)), 1]
        tails = list(accumulate(reversed(row)))[::-1]  # tails[j] = sum(row[j:])
        for top1 in range(max(0, n - size), min(n, size)):
            top2 = n - 1 - top1
            if 0 <= top2 <= top1:
                table[top1, top2] = 1.0 - tails[top1 + 1] / 2**n
    return table


def vote_confidence(counts: dict) -> tuple[str | None, float]:
    """``(leader, beta_confidence)`` of a vote counter; ``(None, 0.0)`` when it is empty."""
    leader, top1, top2 = top_two(counts)
    if leader is None:
        return None, 0.0
    return leader, beta_confidence(top1, top2)
