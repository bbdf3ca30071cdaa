"""short-m@k (Hassid et al., 2025, "Don't Overthink it: Preferring Shorter Thinking Chains for
Improved LLM Reasoning"): start k samples in parallel, stop all of them as soon as the first m
have finished, and take the majority answer of those m; a tie goes to the answer whose
reasoning was shortest. short-1@k is First Finish Search.

Replay mapping: a *sample* is a branch; the k branches are decoded in lockstep, one interval
(Δ tokens) per step, without reading probes, and every branch is charged only what it
generated until the stop. The m voters are the first m branches to finish, taken step by step;
within one step the order of finishing is not observable (a controller sees intervals, not
tokens), so the branches opened first are taken first — a random choice, since each seed
shuffles the branches. "Shortest" in the tie rule is measured in intervals, then opening order.
β scales k: k = 2**round(6*beta) (1 … 64), with m = min(3, k) (the paper's short-3@k).
"""

from autotts import Answer, Branch, Continue, Controller


class ShortMAtK(Controller):
    name = "short_m_at_k"
    description = "k branches in lockstep; majority of the first m to finish (ties: shortest)"

    @staticmethod
    def schedule(beta: float) -> dict:
        k = 2 ** round(6 * beta)
        return {"k": k, "m": min(3, k)}

    def run(self, state, k: int, m: int):
        k = min(k, state.max_branches)
        m = max(1, min(m, k))
        yield Branch(k, probe=False)
        voters: list[int] = []
        while True:
            voters += [i for i in range(k) if state.finished[i] and i not in voters]
            if len(voters) >= m:
                break
            yield Continue([i for i in range(k) if not state.finished[i]], probe=False)
        votes: dict[str, list[int]] = {}  # answer -> [count, depth of its shortest voter]
        for i in voters[:m]:
            count, shortest = votes.get(state.answer[i], (0, state.depth[i]))
            votes[state.answer[i]] = [count + 1, min(shortest, state.depth[i])]
        best = max(votes, key=lambda a: (votes[a][0], -votes[a][1]))
        return Answer(best, f"majority of the first {m} of {k} branches to finish")
