"""Parallel vote: keep ``width`` branches generating side by side and answer as soon as the
branches that finished agree with confidence (ASC's Beta posterior over their votes).
Short branches finish first, so a confident answer usually costs a fraction of SC@64."""

from collections import Counter

from autotts import Answer, Branch, Continue, Controller, majority, vote_confidence


class ParallelVote(Controller):
    name = "parallel-vote"
    description = "width branches in lockstep; stop once the finished votes are confident"

    @staticmethod
    def schedule(beta: float) -> dict:  # the one knob: larger β is wider and more demanding
        return {"width": 2 + round(10 * beta), "threshold": round(0.85 + 0.1 * beta, 4),
                "max_branches": 16 + round(48 * beta)}  # fmt: skip

    def run(self, state, width: int, threshold: float, max_branches: int):
        yield Branch(width)  # open `width` branches and generate their first interval
        while True:
            leader, confidence = vote_confidence(Counter(state.finals))
            if confidence > threshold:
                return Answer(leader, f"finished branches agree (confidence {confidence:.3f})")
            active = state.active()
            if len(active) < width and state.opened < max_branches:  # refill finished slots
                yield Branch(min(width - len(active), max_branches - state.opened))
                active = state.active()
            if not active:
                return Answer(majority(state.finals), "branch limit reached: majority vote")
            yield Continue(active)  # one more interval (Δ tokens) on every active branch
