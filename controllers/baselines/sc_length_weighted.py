"""SC@N, length-weighted — self-consistency where shorter reasoning weighs more.

Self-consistency (Wang et al., 2023) with each vote weighted by the length of its branch,
``exp(-gamma * depth / 32)`` (``depth``: intervals the branch took to finish), the
"shorter is better" rule of "Don't Overthink It" (Hassid et al., 2025) and of first-finish
methods, applied to N whole branches instead of the first to finish. ``gamma = 0`` is plain
SC@N. The default ``gamma = 1`` (one e-fold per 32 intervals) was chosen on AIME24 only.

Replay mapping: a *sample* is one whole branch (``Read``); its *length* is the number of
intervals it generated, the finer token count being hidden from controllers. Ties go to the
answer of the branch read first. β as in ``sc``: N = 2**round(6*beta).
"""

from math import exp

from autotts import Answer, Controller, Read, weighted_majority


class LengthWeightedSelfConsistency(Controller):
    name = "sc_length_weighted"
    description = "read N whole branches, vote weighted by exp(-gamma * depth / 32)"

    @staticmethod
    def schedule(beta: float) -> dict:
        return {"n": 2 ** round(6 * beta), "gamma": 1.0}

    def run(self, state, n: int, gamma: float):
        yield Read(n)
        voters = [i for i, finished in enumerate(state.finished) if finished]
        weights = [exp(-gamma * state.depth[i] / 32) for i in voters]
        best, _ = weighted_majority([state.answer[i] for i in voters], weights)
        return Answer(best, f"length-weighted vote of {n} whole branches (gamma {gamma})")
