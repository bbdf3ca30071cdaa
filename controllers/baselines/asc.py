"""ASC — adaptive consistency (Aggarwal et al., 2023).

Reads whole branches one at a time; after each read (from the second on) computes the
Beta-posterior probability ``c = 1 - I_0.5(top1 + 1, top2 + 1)`` that the leading answer beats
the runner-up, and stops with the leader once ``c > threshold``; after ``n`` reads it takes the
majority vote.

Reads are issued in batches that provably cannot skip a stopping point: with counts
``(top1, top2)`` no sequence of ``m`` further reads can push ``c`` above the threshold before
``c(top1 + m, top2)`` does, so the next ``m`` reads are requested at once. Results and cost are
identical to reading one by one, while a live backend generates each batch in parallel.
"""

from collections import Counter
from functools import cache

from autotts import Answer, Controller, Read, beta_confidence, majority, top_two


@cache
def reads_before_possible_stop(top1: int, top2: int, threshold: float, limit: int) -> int:
    """Fewest further reads after which the stopping rule could fire (capped at ``limit``)."""
    m = 1
    while m < limit and beta_confidence(top1 + m, top2) <= threshold:
        m += 1
    return m


class AdaptiveConsistency(Controller):
    name = "asc"
    description = "whole branches one by one; stop when the Beta-posterior confidence > threshold"

    @staticmethod
    def schedule(beta: float) -> dict:
        return {"n": 2 ** round(6 * beta), "threshold": 0.95}

    def run(self, state, n: int, threshold: float):
        counts = Counter()
        reads = top1 = top2 = 0
        n = min(n, state.max_branches)  # a store with fewer samples: all of them
        while reads < n:
            batch = max(2 - reads, reads_before_possible_stop(top1, top2, threshold, n - reads))
            yield Read(batch)
            for answer in state.finals[reads:]:
                counts[answer] += 1
            reads += batch
            leader, top1, top2 = top_two(counts)
            if reads >= 2 and (confidence := beta_confidence(top1, top2)) > threshold:
                return Answer(leader, f"confidence {confidence:.4f} > {threshold}")
        return Answer(majority(state.finals), f"no confident leader after {n} reads")
