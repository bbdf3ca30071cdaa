"""Per-interval signals: what a model's own token probabilities say about a branch.

Confidence-based methods (DeepConf and kin) read how sure the model was of the tokens it
generated. Stores may carry such observations as the optional ``signals`` field of a question
(:class:`~autotts.envs.stores.QuestionRecord`): by signal name, one list per branch with one value
per interval — ``len(probes) + 1`` values, the last for the finishing interval, ``null`` for
an interval without tokens. Old stores without the field stay valid and simply have none.

The signals ``autotts build-env`` records (and live environments expose), from each generated
token's top-``k`` log-probabilities (``k = TOP_LOGPROBS``):

- ``confidence``: the mean over the interval's tokens of DeepConf's *token confidence*
  ``C = -(1/k) Σ_j log p_j`` over the top-``k`` candidates (Fu et al., 2025, "Deep Think with
  Confidence", eq. 2): high where the model was sure. DeepConf's *group confidence* over a
  window of ``w`` tokens is the mean of ``C`` over the window; with windows that are whole
  intervals it is the mean of the intervals' values (:func:`group_confidences`).
- ``logprob``: the mean log-probability of the sampled tokens over the interval.

Visibility: a value becomes part of ``state.signals[name][i]`` when branch ``i`` has
generated its interval (``Branch``/``Continue`` reveal one value per generated interval,
``Read`` all of them, a finishing extension the rest). Token probabilities come with the
tokens, without a probe, so ``probe=False`` reveals them too; nothing beyond a branch's
current depth is ever visible, and pruning freezes what was seen.

A controller that needs a signal declares it (``requires = ("confidence",)``); evaluation
refuses with :class:`MissingSignal` on an environment without it, before any episode runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ..errors import BadInput

TOP_LOGPROBS = 20  # DeepConf's k; vLLM's default limit on returned log-probabilities
CONFIDENCE, LOGPROB = "confidence", "logprob"


class MissingSignal(BadInput):
    """A controller needs a signal the environment does not carry (the message says which)."""


def token_confidence(top_logprobs: Iterable[float], k: int = TOP_LOGPROBS) -> float:
    """DeepConf's token confidence: minus the mean of the ``k`` largest log-probabilities."""
    best = sorted(top_logprobs, reverse=True)[:k]
    if not best:
        raise ValueError("token confidence needs at least one log-probability")
    return -math.fsum(best) / len(best)


def interval_means(values: Sequence[float], delta: int, n_intervals: int) -> list[float | None]:
    """Per-token ``values`` of one generation summarised per interval of ``delta`` tokens:
    the mean of each consecutive chunk, ``n_intervals`` of them (``None`` for an interval that
    got no tokens; the last interval takes whatever is left)."""
    out: list[float | None] = []
    for j in range(n_intervals):
        chunk = values[j * delta : (j + 1) * delta if j < n_intervals - 1 else None]
        out.append(math.fsum(chunk) / len(chunk) if chunk else None)
    return out


def group_confidences(values: Sequence[float | None], window: int) -> list[float]:
    """Mean confidence over every run of ``window`` consecutive intervals (``None`` values
    skipped); one group, the mean of all, when the branch has fewer intervals than that."""
    known = [v for v in values if v is not None]
    if not known:
        return []
    if len(known) <= window:
        return [math.fsum(known) / len(known)]
    return [math.fsum(known[j : j + window]) / window for j in range(len(known) - window + 1)]


def lowest_group_confidence(values: Sequence[float | None], window: int) -> float | None:
    """DeepConf's *lowest group confidence* of a branch (its least confident window), or
    ``None`` when no interval has a value."""
    groups = group_confidences(values, window)
    return min(groups) if groups else None


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation between order statistics
    (numpy's default method)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def check_required(controller, env) -> None:
    """Raise :class:`MissingSignal` when ``controller`` declares signals ``env`` lacks."""
    needed = tuple(getattr(controller, "requires", ()) or ())
    missing = [name for name in needed if name not in getattr(env, "signal_names", ())]
    if missing:
        name = getattr(controller, "name", "") or type(controller).__name__
        raise MissingSignal(
            f"{name} needs the signal(s) {missing}, which environment {env.env_id} does not "
            f"have (it has {sorted(getattr(env, 'signal_names', ())) or 'none'}): the shipped "
            "stores hold answers only. Build a store with per-interval confidence "
            "(autotts build-env records it) or run the controller live"
        )


class RevealsSignals:
    """Mixed into a replay episode whose store carries signals (``order[4]``: values by name,
    per branch in opening order). Keeps ``state.signals`` in step with the branches' depth;
    see the module docstring for the visibility rule."""

    __slots__ = ()

    def __init__(self, q, order: tuple, *rest):
        super().__init__(q, order, *rest)
        self.values = order[4]
        self.state.signals = {name: [] for name in self.values}

    def open(self, k, model=None) -> range:
        ids = super().open(k, model)
        for seen in self.state.signals.values():
            seen.extend([] for _ in ids)
        return ids

    def extend(self, ids, k, probe: bool) -> None:
        try:
            super().extend(ids, k, probe)
        finally:  # on an error midway, what was generated is still revealed
            self._reveal(ids)

    def read(self, k, model=None) -> range:
        ids = super().read(k, model)
        for seen in self.state.signals.values():
            seen.extend([] for _ in ids)
        self._reveal(ids)
        return ids

    def _reveal(self, ids) -> None:
        depth, state = self.depth, self.state
        for name, values in self.values.items():
            seen = state.signals[name]
            for i in ids:
                if type(i) is int and 0 <= i < len(depth) and i < len(seen):
                    have = len(seen[i])
                    if depth[i] > have:
                        seen[i].extend(values[i][have : depth[i]])
