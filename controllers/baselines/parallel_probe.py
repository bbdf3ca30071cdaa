"""Parallel-Probe: open many branches, advance them together interval by interval, prune the
ones that keep disagreeing with the majority of the latest probe answers, and stop once the
majority has been stable long enough.

Exactly the reference algorithm (reference-results.md): steps count from 0; the leader is the
majority of the latest answers of all unpruned branches (finished ones included); from step
``warm_up`` on, with more than one unpruned branch, every unfinished branch that disagrees with
the leader gains an off-track count (agreeing resets it) and is pruned at ``patience``; the
stability counter resets whenever the leader changes; stop when it reaches ``stable_steps``
(T), when nothing is left to extend, or after ``max_steps`` steps.
"""

from autotts import Answer, Branch, Continue, Controller, Prune, majority


class ParallelProbe(Controller):
    name = "parallel-probe"
    description = "width-first probing with majority-disagreement pruning and a stability stop"

    @staticmethod
    def schedule(beta: float) -> dict:
        return {
            "n": 2 ** round(6 * beta),
            "stable_steps": 40,
            "patience": 7,
            "warm_up": 15,
            "max_steps": 100,
        }

    def run(self, state, n: int, stable_steps: int, patience: int, warm_up: int, max_steps: int):
        ids = yield Branch(n)
        finished, pruned, latest = state.finished, state.pruned, state.answer
        off_track = [0] * n
        leader = previous = None
        stable = 0
        for step in range(max_steps):
            extend = [i for i in ids if not finished[i] and not pruned[i]]
            if extend:
                yield Continue(extend)
            unpruned = [i for i in ids if not pruned[i]]
            leader = majority(latest[i] for i in unpruned)
            if step >= warm_up and len(unpruned) > 1:
                to_prune = []
                for i in unpruned:
                    if finished[i]:
                        continue
                    off_track[i] = off_track[i] + 1 if latest[i] != leader else 0
                    if off_track[i] >= patience:
                        to_prune.append(i)
                if to_prune:
                    yield Prune(to_prune)
                    leader = majority(latest[i] for i in ids if not pruned[i])
            stable = stable + 1 if step > 0 and leader == previous else 0
            previous = leader
            if stable >= stable_steps:
                return Answer(leader, f"leader stable for {stable_steps + 1} steps")
            if all(finished[i] or pruned[i] for i in ids):
                return Answer(leader, "every branch finished or pruned")
        return Answer(leader, f"step limit {max_steps}")
