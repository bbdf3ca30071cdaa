"""SC@N — self-consistency (Wang et al., 2023): read N whole branches, majority vote.

Swept over N directly (``--grid n=1,2,4,...``) or through beta: N = 2**round(6*beta), so beta
0 → 1 branch and beta 1 → 64 branches.
"""

from autotts import Answer, Controller, Read, majority


class SelfConsistency(Controller):
    name = "sc"
    description = "read N whole branches, majority vote (ties: first seen)"

    @staticmethod
    def schedule(beta: float) -> dict:
        return {"n": 2 ** round(6 * beta)}

    def run(self, state, n: int):
        n = min(n, state.max_branches)  # a store with fewer samples: all of them
        yield Read(n)
        return Answer(majority(state.finals), f"majority of {n} whole branches")
