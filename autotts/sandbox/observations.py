"""Observations: what an executed action changed in an episode's state, computed by the
parent (:func:`observe_fast`, :func:`observe_changes`) and written into the worker's mirror
state (:func:`apply_observation`). The two forms are described in :mod:`.protocol`."""

from __future__ import annotations

import contextlib
import os

from ..core.contract import Branch, ChargeAgain, Continue, Note, Probe, Prune
from .protocol import NO_MODEL, U32

# --- worker side -----------------------------------------------------------------------


def apply_observation(state, entry: bytes, ids: tuple, steps, observation):
    """Write an observation into the worker's mirror ``state``; returns the action's reply.
    ``entry``, ``ids`` and ``steps`` are what :func:`encode_action` gave for the action. A
    mirror the controller changed (it is read-only) raises ``ValueError``/``IndexError``."""
    if type(observation) is list:
        return _apply_changes(state, entry, observation)
    reply, tokens, probe_tokens, cost, answers, ends = observation
    state.tokens, state.probe_tokens = tokens, probe_tokens
    if cost is not None:
        state.cost = cost
    tag = entry[0]
    if tag == 0x63 or tag == 0x43:  # c, C: Continue
        reveal(state.depth, state.answer, state.history, ids, steps, answers)
    elif tag == 0x62:  # b: Branch
        ids = tuple(reply)
        _open(state, len(ids), _entry_model(entry, 10))
        reveal(state.depth, state.answer, state.history, ids, 1, answers)
    elif tag == 0x72:  # r: Read (every new branch ends at once)
        ids = tuple(reply)
        _open(state, len(ids), _entry_model(entry, 9))
    elif tag == 0x70:  # p: Probe, as the engine: only branches neither finished nor new
        answer, history, finished, depth = state.answer, state.history, state.finished, state.depth
        for i, a in zip(ids, answers, strict=True):
            if not finished[i] and depth[i]:
                answer[i] = a
                history[i].append(a)
    elif tag == 0x78:  # x: Prune
        pruned = state.pruned
        for i in ids:
            pruned[i] = True
    if ends:
        depth, answer, history, finished = state.depth, state.answer, state.history, state.finished
        for position, d, final in ends:
            i = ids[position]
            depth[i], finished[i] = d, True
            if answers is None:
                answer[i] = final
                history[i].append(final)
            state.finals.append(final)
    return reply


def _entry_model(entry: bytes, at: int):
    size = U32.unpack_from(entry, at)[0]
    return None if size == NO_MODEL else entry[at + 4 : at + 4 + size].decode("utf-8")


def _open(state, k: int, model) -> None:
    model = model if model is not None else state.models[0]
    state.model.extend([model] * k)
    state.depth.extend([0] * k)
    state.answer.extend([None] * k)
    state.history.extend([] for _ in range(k))
    state.finished.extend([False] * k)
    state.pruned.extend([False] * k)
    for seen in state.signals.values():
        seen.extend([] for _ in range(k))


def reveal(depth, answer, history, ids, steps, answers) -> None:
    """Advance each ``ids[j]`` by ``steps`` (or ``steps[j]``) intervals in the mirror and, with
    ``answers``, record ``answers[j]`` as its latest answer."""
    for j, i in enumerate(ids):
        depth[i] += steps if type(steps) is int else steps[j]
        if answers is not None:
            a = answers[j]
            answer[i] = a
            history[i].append(a)


def _apply_changes(state, entry: bytes, observation: list):
    reply, tokens, probe_tokens, cost, changes, finals = observation
    state.tokens, state.probe_tokens = tokens, probe_tokens
    if cost is not None:
        state.cost = cost
    depth, answer, history = state.depth, state.answer, state.history
    finished, pruned, signals = state.finished, state.pruned, state.signals
    tag = entry[:1]
    for change in changes:
        i, d, done, stopped, revealed = change[:5]
        if i == len(depth):  # a new branch
            at = 10 if tag == b"b" else 9 if tag == b"r" else None
            _open(state, 1, _entry_model(entry, at) if at is not None else None)
        elif not 0 <= i < len(depth):
            raise IndexError(i)
        depth[i], finished[i], pruned[i] = d, done, stopped
        if revealed:
            history[i].extend(revealed)
            answer[i] = revealed[-1]
        if len(change) > 5:
            for name, values in change[5].items():
                signals[name][i].extend(values)
    if finals:
        state.finals.extend(finals)
    return reply


# --- parent side -----------------------------------------------------------------------


FAST = (Continue, Branch, Probe, Prune, ChargeAgain, Note)


def touched_before(state, action) -> list[tuple[int, int, dict | None]]:
    """``(id, history length, signal lengths)`` of the existing branches ``action`` names,
    taken before it runs (what :func:`observe_changes` compares against)."""
    kind = type(action)
    if kind is Continue or kind is Probe or kind is Prune:
        ids = action.ids
    elif kind is ChargeAgain:
        ids = (action.branch,)
    else:
        return []
    history, signals, n = state.history, state.signals, len(state.history)
    seen, out = set(), []
    for i in ids:
        if 0 <= i < n and i not in seen:
            seen.add(i)
            lengths = {name: len(v[i]) for name, v in signals.items()} if signals else None
            out.append((i, len(history[i]), lengths))
    return out


def observe_fast(state, action, reply, n_finals: int) -> tuple:
    """The observation of an executed ``Continue``, ``Branch``, ``Probe``, ``Prune``,
    ``ChargeAgain`` or ``Note`` on a replay engine (see the module docstring)."""
    kind = type(action)
    answers = None
    ids = tuple(reply) if kind is Branch else getattr(action, "ids", ())
    if kind is Probe or ((kind is Continue or kind is Branch) and action.probe):
        answers = pick(state.answer, ids)
    ends = ()
    finals = state.finals
    if len(finals) != n_finals:
        depth, finished, answer = state.depth, state.finished, state.answer
        ends = tuple((j, depth[i], answer[i]) for j, i in enumerate(ids) if finished[i])
    return (reply, state.tokens, state.probe_tokens, state.cost, answers, ends)


def pick_python(values: list, ids) -> tuple:
    """``values[i]`` for each id (the specification of the compiled ``pick``)."""
    return tuple([values[i] for i in ids])


def observe_changes(state, before: list, reply, n_finals: int) -> list:
    """The observation of any executed action, by the branches it changed: its reply, the
    totals, the state changes of the branches it touched (``before`` from
    :func:`touched_before`, plus any new branches in ``reply``) and the final answers after
    the first ``n_finals``."""
    if type(reply) is list:  # Branch/Read: the new branches
        before = before + [(i, 0, dict.fromkeys(state.signals, 0)) for i in reply]
    depth, history, finished, pruned = state.depth, state.history, state.finished, state.pruned
    signals = state.signals
    changes = []
    for i, had, lengths in before:
        change = [i, depth[i], finished[i], pruned[i], history[i][had:]]
        if lengths:
            change.append({name: signals[name][i][lengths[name] :] for name in lengths})
        changes.append(change)
    return [reply, state.tokens, state.probe_tokens, state.cost, changes, state.finals[n_finals:]]


# The compiled hot path (autotts/sandbox/_wire.c); the function above is its specification,
# used where the extension is not built (or AUTOTTS_PURE_PYTHON=1).
pick = pick_python
if not os.environ.get("AUTOTTS_PURE_PYTHON"):
    with contextlib.suppress(ImportError):
        from ._wire import pick
