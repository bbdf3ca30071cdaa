"""The parent's compiled engine for plain replay episodes: :class:`CompiledEpisode` plays an
untraced episode of a single-model replay store (no signals, not width-only) on
``_wire.ReplayCore``, which keeps only the engine's own accounting (the worker keeps the
state its controller sees) and answers each action with its observation directly. The
Python engine (:class:`autotts.envs.replay._Episode` through :func:`autotts.core.engine.perform`) is
its specification: tests play both on every action sequence, refused ones included, and
refusals raise the Python engine's own messages (:func:`_explain`)."""

from __future__ import annotations

import contextlib
import os
from functools import partial
from types import SimpleNamespace

from ..core.arguments import check_finished, inactive_message, requested_intervals
from ..core.contract import ActionError, Branch, ChargeAgain, Continue, Note, Probe, Prune, Read
from ..envs.replay import _Episode as ReplayEpisode

ReplayCore = _act_round = None
if not os.environ.get("AUTOTTS_PURE_PYTHON"):
    with contextlib.suppress(ImportError):
        from ._wire import ReplayCore
        from ._wire import act_round as _act_round

_KINDS = (Continue, Branch, Read, Probe, Prune, ChargeAgain, Note)


def act_round(cores: list, actions: list, max_steps: int, max_named: int) -> tuple[list, list]:
    """Play the round's common actions on the compiled cores (``None`` for an episode on
    another engine) in one call: ``(observations, pending)``, where the positions in
    ``pending`` (their observation ``None``) are left to the caller, untouched: answers and
    failures, other engines, actions past ``max_steps`` or ``max_named`` (the episode's
    step and id limits) and actions the engine refuses. Without the extension every
    position is left."""
    if _act_round is None:
        return [None] * len(actions), range(len(actions))
    return _act_round(cores, actions, _KINDS, max_steps, max_named)


def compiled_source(source: tuple) -> bool:
    """Whether an episode of ``source`` (:meth:`~autotts.core.environment.EpisodeRunner.episode_source`)
    can be played by the compiled engine."""
    return ReplayCore is not None and source[0] is ReplayEpisode


def _explain(model: str, limit: int, kind: str, *args) -> None:
    """Raise the Python engine's message for a refused action."""
    if kind == "bad_id":
        i, opened = args
        raise ActionError(inactive_message(i, range(opened), ()))
    if kind == "inactive":
        i, pruned = args
        raise ActionError(inactive_message(i, range(i + 1), {i: pruned}))
    if kind == "steps":
        requested_intervals(*args)
    if kind == "charge":
        check_finished(args[0], ())
    if kind in ("count", "model", "limit"):  # the engine's own checks, on its own numbers
        start = args[1] if kind == "limit" else 0
        k = args[0] if kind != "model" else 0
        wanted = args[0] if kind == "model" else None
        opened = range(start)
        episode = SimpleNamespace(
            live=opened, model=model, max_branches=limit, state=SimpleNamespace(depth=opened)
        )
        ReplayEpisode._reserve(episode, k, wanted)
    raise ActionError(f"refused ({kind})")


_ACT = {
    Continue: lambda core, a: core.continue_(a.ids, a.steps, a.probe),
    Branch: lambda core, a: core.branch(a.k, a.probe, a.model),
    Read: lambda core, a: core.read(a.k, a.model),
    Probe: lambda core, a: core.probe(a.ids),
    Prune: lambda core, a: core.prune(a.ids),
    ChargeAgain: lambda core, a: core.charge_again(a.branch),
    Note: lambda core, a: core.note(),
}


class CompiledEpisode:
    """One episode on the compiled engine: ``act(action)`` gives the observation."""

    __slots__ = ("core",)

    def __init__(self, source: tuple):
        _, question, order, probe_cost, limit, model = source
        probes, lengths, totals, finals = order[:4]
        n = len(lengths) if limit is None else min(len(lengths), limit)
        explain = partial(_explain, model, n)
        self.core = ReplayCore(
            probes, lengths, totals, finals, question.delta, probe_cost, n, model, explain
        )

    def act(self, action):
        act = _ACT.get(type(action))
        if act is None:  # Generate: replay holds no text
            ReplayEpisode.generate(None, None, None, None)
        return act(self.core, action)

    def totals(self) -> tuple[int, int, int]:
        """``(tokens, probe_tokens, opened)``."""
        return self.core.totals()
