"""DeepConf (Fu, Wang, Tian & Zhao, 2025, "Deep Think with Confidence"): weigh, filter and stop
reasoning traces by the model's own token confidence.

A trace's confidence is its *lowest group confidence*: token confidence C = −mean of the
top-k log-probabilities (k = 20), averaged over sliding windows of 2,048 tokens, minimum over
the windows (the whole trace when shorter). Two variants (``mode``):

- ``offline`` (DeepConf@N): generate ``budget`` traces, keep the most confident fraction
  ``keep`` of those with an answer (threshold: the (1 − keep) percentile of their
  confidences, ties kept), and answer by confidence-weighted majority (weight = confidence).
- ``online``: generate ``warmup`` traces to the end; the stopping threshold s is the
  (1 − keep) percentile of their confidences (keep = 0.9: DeepConf-high, s at the 10th
  percentile; keep = 0.1: DeepConf-low, the 90th). Further traces are generated in waves
  of ``warmup``; a trace whose latest window's group confidence falls below s is stopped and
  never votes. Voters are the warm-up traces at or above s and every trace that finished
  without falling below it;
  the episode stops once the weighted share of the leading answer reaches ``consensus``
  (τ = 0.95), or at ``budget`` traces.

Replay mapping: a *trace* is a branch; *tokens* are seen through the store's per-interval
``confidence`` signal (the mean token confidence of each Δ-token interval, recorded by
``autotts build-env``; :mod:`autotts.core.signals`), so a 2,048-token window is
``round(window_tokens / Δ)`` whole intervals (4 at Δ = 500) and the online stop is checked at
interval ends once a trace has a full window — up to Δ − 1 tokens later than the paper's
per-token check. Traces whose final answer is unusable (``ERR`` or empty) never vote, as in
DeepConf's code, nor do traces without confidence values; when no trace can vote, the answer
is the first final answer. Waves run in lockstep, one interval per step, without probes (DeepConf
reads no intermediate answers); consensus is checked after the warm-up and after each wave,
where the paper checks after every trace. β scales the trace budget, 2**round(4 + 3*beta)
(16 … 128). The shipped stores carry no confidence, so this controller is refused there.
"""

from autotts import (
    Answer,
    Branch,
    Continue,
    Controller,
    Prune,
    Read,
    lowest_group_confidence,
    percentile,
    weighted_majority,
)

UNUSABLE = ("ERR", "")


class DeepConf(Controller):
    name = "deepconf"
    description = "confidence-filtered, confidence-weighted voting; online early stop (DeepConf)"
    requires = ("confidence",)

    @staticmethod
    def schedule(beta: float) -> dict:
        return {
            "budget": 2 ** round(4 + 3 * beta),
            "mode": "online",
            "warmup": 16,
            "keep": 0.9,
            "consensus": 0.95,
            "window_tokens": 2048,
        }

    def run(self, state, budget, mode, warmup, keep, consensus, window_tokens):
        confidence = state.signals.get("confidence")
        if confidence is None:
            raise ValueError(
                "DeepConf needs per-interval confidence (state.signals['confidence']); this "
                "environment has none: build a store with autotts build-env or run live"
            )
        if mode not in ("online", "offline"):
            raise ValueError(f"mode must be 'online' or 'offline', got {mode!r}")
        if not 0 < keep <= 1:
            raise ValueError(f"keep is the fraction of traces kept, in (0, 1]; got {keep!r}")
        window = max(1, round(window_tokens / state.delta))
        budget = min(budget, state.max_branches)

        def score(i):
            return lowest_group_confidence(confidence[i], window)

        if mode == "offline":
            ids = list((yield Read(budget)))
            valid = {i: score(i) for i in ids if state.answer[i] not in UNUSABLE}
            scores = {i: s for i, s in valid.items() if s is not None}
            if not scores:
                return Answer(state.finals[0] if state.finals else "ERR", "no usable trace")
            bar = percentile(list(scores.values()), 100 * (1 - keep))
            kept = [i for i in scores if scores[i] >= bar]
            best, _ = weighted_majority([state.answer[i] for i in kept], [scores[i] for i in kept])
            return Answer(best, f"weighted vote of the {len(kept)} most confident of {budget}")

        first = list((yield Read(min(warmup, budget))))
        scores = {i: score(i) for i in first}
        known = [s for s in scores.values() if s is not None]
        bar = percentile(known, 100 * (1 - keep)) if known else float("inf")
        voters = [i for i in first if scores[i] is not None and scores[i] >= bar]
        stopped = 0
        while True:
            voters = [i for i in voters if state.answer[i] not in UNUSABLE]
            answers = [state.answer[i] for i in voters]
            best, share = weighted_majority(answers, [scores[i] for i in voters])
            room = budget - state.opened
            if (best is not None and share >= consensus) or room <= 0:
                break
            wave = list((yield Branch(min(warmup, room), probe=False)))
            while alive := [i for i in wave if not state.finished[i] and not state.pruned[i]]:
                low = [i for i in alive if _below(confidence[i], window, bar)]
                if low:
                    stopped += len(low)
                    yield Prune(low)
                    alive = [i for i in alive if i not in low]
                if alive:
                    yield Continue(alive, probe=False)
            for i in wave:  # a trace whose last window fell below s as it finished is stopped
                if state.finished[i] and not _below(confidence[i], window, bar):
                    scores[i] = score(i)
                    if scores[i] is not None:  # a trace without any confidence cannot vote
                        voters.append(i)
                elif state.finished[i]:
                    stopped += 1
        if best is None:
            return Answer(state.finals[0] if state.finals else "ERR", "no usable trace")
        return Answer(
            best,
            f"weighted share {share:.2f} over {len(voters)} traces, {stopped} stopped early, "
            f"threshold {bar:.3f}",
        )


def _below(values: list, window: int, bar: float) -> bool:
    """Whether the latest full window of a trace's interval confidences is below ``bar``."""
    recent = [v for v in values[-window:] if v is not None]
    return len(values) >= window and len(recent) == window and sum(recent) / window < bar
