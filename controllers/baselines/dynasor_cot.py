"""Dynasor-CoT with Certaindex (Fu et al., 2024, "Efficiently Serving LLM Reasoning Programs
with Certaindex"): probe a reasoning chain in the middle at fixed token intervals and stop it
as soon as its last w probe answers agree — the certainty signal the paper calls Certaindex
for chain-of-thought programs; a chain that finishes first keeps its final answer. Over
several chains, the answer is the majority of the chains' answers (each chain stopped by its
own certainty, as in Dynasor's self-consistency programs).

Replay mapping: a *chain* is a branch, a *probe* is the store's intermediate answer revealed
at the end of every interval (Δ tokens, the store's probe frequency); the paper's consistency
rule — identical answers in w consecutive probes, none of them unusable — reads "unusable" as
a probe with no extractable answer (``ERR``). A stopped chain is pruned (charged only what it
generated) and votes with its agreed probe answer; a finished chain votes with its final
answer. Ties go to the answer seen first. β scales both the chain count N = 2**round(4*beta)
(1 … 16) and the window w = 4 + round(12*beta) (4 … 16): more chains, each more certain. The
stores probe every 500 tokens, far coarser than the paper's probes, and early guesses agree
often: on AIME24 one chain stopped after 2 agreeing probes is right 14.7 % of the time against
51.2 % for the whole chain, after 12 probes 48.4 % at 80 % of the tokens — hence the wider
windows (chosen on AIME24 only).
"""

from collections import Counter

from autotts import Answer, Branch, Continue, Controller, Prune


def certain(history: list, window: int) -> bool:
    """Whether the last ``window`` probe answers are one usable answer."""
    last = history[-window:]
    return len(last) == window and last[0] not in (None, "ERR") and last.count(last[0]) == window


class DynasorCoT(Controller):
    name = "dynasor_cot"
    description = "N chains probed every interval; stop a chain when w probes agree; majority"

    @staticmethod
    def schedule(beta: float) -> dict:
        return {"n": 2 ** round(4 * beta), "window": 4 + round(12 * beta)}

    def run(self, state, n: int, window: int):
        n = min(n, state.max_branches)
        yield Branch(n)
        answers: dict[int, str] = {}  # chain -> its answer, in the order chains settle
        while True:
            stopped = []
            for i in range(n):
                if i in answers:
                    continue
                if state.finished[i]:
                    answers[i] = state.answer[i]
                elif certain(state.history[i], window):
                    answers[i] = state.answer[i]
                    stopped.append(i)
            if stopped:
                yield Prune(stopped)
            alive = [i for i in range(n) if i not in answers]
            if not alive:
                break
            yield Continue(alive)
        votes = Counter(answers.values())
        best = max(votes, key=votes.__getitem__)  # Counter keeps first-seen order on ties
        return Answer(best, f"majority of {n} chains, each stopped after {window} agreeing probes")
