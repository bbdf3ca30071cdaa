"""Checks of action arguments shared by every episode engine: exact built-in types, ranges,
and the messages that say what is wrong (raised as :class:`~autotts.core.contract.ActionError`)."""

from __future__ import annotations

from collections.abc import Sequence

from .contract import ActionError

MAX_STEPS_PER_ACTION = 1_000_000  # steps of one Continue, per branch (far past any branch's end)


def flag(value) -> bool:
    if value is not True and value is not False:
        raise ActionError(f"probe must be True or False, got {value!r}")
    return value


def model_name(value):
    if value is not None and type(value) is not str:
        raise ActionError(f"model must be None or a model name (str), got {value!r}")
    return value


def check_finished(i, done) -> None:
    """``ChargeAgain(i)`` must name a finished branch."""
    if type(i) is not int or not 0 <= i < len(done) or not done[i]:
        raise ActionError(f"ChargeAgain({i!r}): only a finished branch can be charged again")


def check_ids(ids) -> None:
    """Branch ids must be built-in ints (not bools, not subclasses)."""
    for i in ids:
        if type(i) is not int:
            raise ActionError(f"branch ids must be ints, got {i!r} ({type(i).__name__})")


def requested_intervals(ids, k) -> int:
    """Intervals a ``Continue(ids, steps=k)`` asks for, or a clear error for bad steps."""
    bound = MAX_STEPS_PER_ACTION
    if type(k) is int:
        if not 1 <= k <= bound:
            raise ActionError(f"steps must be an int in 1..{bound:,}, got {k!r}")
        return k * len(ids)
    if not isinstance(k, Sequence) or isinstance(k, str):
        raise ActionError(f"steps must be an int >= 1 or a list of them (one per id), got {k!r}")
    if len(k) != len(ids):
        raise ActionError(f"steps has {len(k)} entries for {len(ids)} branch ids")
    if not all(type(s) is int and 1 <= s <= bound for s in k):
        raise ActionError(f"steps must be ints in 1..{bound:,}, got {list(k)!r}")
    return sum(k)


STATE_MODIFIED = (
    "the controller modified its EpisodeState (it is read-only: copy a list before sorting "
    "or changing it)"
)


def inactive_message(i, live, pruned) -> str:
    if not isinstance(i, int) or i < 0 or i >= len(live):
        return f"branch id {i!r} was never opened ({len(live)} branches are open)"
    status = "pruned" if pruned[i] else "finished"
    return f"branch {i} is {status}; only active branches can be continued"
