"""ESC — early-stopping self-consistency (Li et al., 2024).

Reads whole branches in windows of ``window``; returns at once when all answers of a window
agree; after ``n // window`` windows, majority vote over everything read. On a store with
fewer branches than that (an imported sample dump), the last window is what is left.
"""

from autotts import Answer, Controller, Read, majority


class EarlyStoppingSelfConsistency(Controller):
    name = "esc"
    description = "windows of whole branches; stop at the first unanimous window"

    @staticmethod
    def schedule(beta: float) -> dict:
        return {"n": 8 * 2 ** round(3 * beta), "window": 8}

    def run(self, state, n: int, window: int):
        for _ in range(max(1, n // window)):
            start = len(state.finals)
            size = min(window, state.max_branches - start)  # a store with fewer samples
            if size <= 0:
                break
            yield Read(size)
            answers = state.finals[start:]
            if answers.count(answers[0]) == len(answers):
                return Answer(answers[0], f"window of {window} unanimous")
        return Answer(majority(state.finals), "no unanimous window")
