"""FFS — First Finish Search (Agarwal et al., 2025, "First Finish Search: Efficient Test-Time
Scaling in Large Language Models"): start N samples in parallel and answer with the first to
finish, i.e. the shortest trace; the others are stopped at that moment.

Replay mapping: a *sample* is a branch; the N branches are decoded in lockstep, one interval
(Δ tokens) per step, without reading probes; the first step in which any branch reaches its end
decides, and every branch is charged only what it generated until then. Within one interval
the order of finishing is not observable (a controller sees intervals, not tokens), so among
branches finishing in the same step the first opened wins — a uniformly random choice, since
each seed shuffles the branches. β scales N: N = 2**round(6*beta) (1 … 64; N = 1 is one
ordinary sample).
"""

from autotts import Answer, Branch, Continue, Controller


class FirstFinishSearch(Controller):
    name = "ffs"
    description = "N branches in lockstep; answer with the first to finish"

    @staticmethod
    def schedule(beta: float) -> dict:
        return {"n": 2 ** round(6 * beta)}

    def run(self, state, n: int):
        n = min(n, state.max_branches)
        yield Branch(n, probe=False)
        while True:
            done = [i for i in range(n) if state.finished[i]]
            if done:
                return Answer(state.answer[done[0]], f"branch {done[0]} finished first")
            yield Continue(list(range(n)), probe=False)
