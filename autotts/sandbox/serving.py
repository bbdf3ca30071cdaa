"""The parent as the engine of a worker's episodes: :class:`EpisodeServer` keeps the episodes
a worker has in flight on the parent's own episode engines, executes each round's actions and
answers with what they reveal (:mod:`.protocol`). Every number of a result (tokens, validity,
revealed answers, steps) is the parent's own; the worker only chooses actions and answers.
"""

from __future__ import annotations

import sys
from collections import deque

from ..core.contract import (
    ActionError,
    Branch,
    ChargeAgain,
    Continue,
    ControllerFailure,
    Probe,
    Prune,
    Read,
)
from ..core.engine import (
    BRANCH,
    CHARGE_AGAIN,
    CONTINUE,
    NOTE,
    PROBE,
    PRUNE,
    READ,
    EngineFailure,
    EpisodeResult,
    error_text,
    finish_result,
    perform,
    step_limit_message,
)
from ..envs.replay import _Episode as ReplayEpisode
from .compiled_engine import CompiledEpisode, act_round, compiled_source
from .limits import Rejected
from .observations import FAST, observe_changes, observe_fast, touched_before
from .protocol import ENDED_BY_ENGINE, ProtocolError, decode_round

MAX_TRACE_ACTIONS = 5_000  # per traced episode; the rest of a longer log is left out
MAX_TRACE_IDS = 50_000  # branch ids (and text, 8 characters as one id) in one episode's log
MAX_EPISODE_IDS = 200_000  # branch ids one episode may name in all (bounds the engine's state)
TRACE_BUDGET = 400_000  # log weight per evaluation, over all episodes (see _weight)
TEXT_BUDGET_BYTES = 128 << 20  # distinct answers, reasons and errors the parent keeps
MAX_KEPT_REASON = 200  # characters of a sandboxed episode's reason kept (display only)


def _ids(entry: tuple) -> int:
    """A log entry's size in branch ids, its text (a note, a model) at 8 characters an id."""
    return len(entry[1]) + (len(entry[2]) >> 3 if type(entry[2]) is str else 0)


def _weight(entry: tuple) -> int:
    """What a log entry weighs against :data:`TRACE_BUDGET`: about one plain action's memory
    (~150 bytes) per unit, 8 ids (or 64 characters) to a unit."""
    return 1 + _ids(entry) // 8


class TraceBudget:
    """What the results of one evaluation may keep in the parent, whatever the candidate
    does: ``left``, the weight its traces may still keep, and the memory of the distinct
    answer, reason and error texts (:meth:`text`), each kept once."""

    def __init__(self, total: int = TRACE_BUDGET, text_bytes: int = TEXT_BUDGET_BYTES):
        self.left, self.text_left, self.texts = total, text_bytes, {}

    def text(self, value: str | None) -> str | None:
        """``value``, kept once however many results hold it (each is at most
        ``MAX_TEXT_CHARS`` long, by the protocol); :class:`~autotts.sandbox.limits.Rejected`
        past the text budget."""
        if value is None:
            return None
        kept = self.texts.get(value)
        if kept is None:
            self.text_left -= sys.getsizeof(value) + 100  # (and its slot in the dict)
            if self.text_left < 0:
                raise Rejected(
                    f"the episodes' answers, reasons and errors take more than "
                    f"{TEXT_BUDGET_BYTES >> 20} MB of distinct text: answer with short final "
                    "answers and reasons"
                )
            kept = self.texts[value] = value
        return kept


def _log_entry(action, observation: tuple) -> tuple:
    """The action-log entry of an action the compiled engine played: what
    :func:`~autotts.core.engine.perform` logs for it on the Python engine (the decoded action's
    ids are tuples, its flags bools, its model ``None`` or a str)."""
    kind, tokens = type(action), observation[1]
    if kind is Continue:
        return (CONTINUE, action.ids, action.steps, action.probe, tokens)
    if kind is Branch:
        return (BRANCH, tuple(observation[0]), action.model, action.probe, tokens)
    if kind is Read:
        return (READ, tuple(observation[0]), action.model, False, tokens)
    if kind is Probe:
        return (PROBE, action.ids, 0, True, tokens)
    if kind is Prune:
        return (PRUNE, action.ids, 0, False, tokens)
    if kind is ChargeAgain:
        return (CHARGE_AGAIN, (action.branch,), 0, False, tokens)
    return (NOTE, (), action.text, False, tokens)


class _Episode:
    """One episode a worker has in flight: its engine, result and action log. ``counter``
    holds its ``steps`` and ``named`` (branch ids its actions named): the compiled core, which
    counts them itself in :func:`act_round`, or this object. A traced episode on the compiled
    engine keeps its log from the observations (:func:`_log_entry`)."""

    __slots__ = (
        "unit", "engine", "core", "counter", "result", "steps", "log", "append", "source",
        "fast", "named", "kept",
    )  # fmt: skip

    def __init__(
        self, unit: int, source: tuple, result: EpisodeResult, traced: bool, compiled: bool
    ):
        self.unit, self.source, self.result = unit, source, result
        if compiled and compiled_source(source):
            self.engine, self.fast = CompiledEpisode(source), None
            self.core = self.counter = self.engine.core
        else:
            self.engine = source[0](*source[1:])
            self.fast = isinstance(self.engine, ReplayEpisode) and not self.engine.state.signals
            self.core, self.counter = None, self
        self.steps = self.named = self.kept = 0
        self.log = [] if traced else None
        self.append = self._record if traced else _drop

    def _record(self, entry: tuple) -> None:
        self.kept += 1 + _ids(entry)
        if len(self.log) <= MAX_TRACE_ACTIONS and self.kept <= MAX_TRACE_IDS:
            self.log.append(entry)


def _drop(_entry) -> None:
    pass


def _repeats(action) -> bool:
    """Whether an action names a branch twice (its observation then takes the general form:
    the fast one holds one answer per branch)."""
    ids = getattr(action, "ids", ())
    return len(ids) > 1 and len(set(ids)) != len(ids)


class EpisodeServer:
    """Serves one worker: ``units`` are ``(env, question, seed)`` per unit of its job, in
    job order (``env`` an :class:`~autotts.core.environment.EpisodeRunner`); ``traced(position)`` says
    whether to keep a unit's action log. ``serve(data)`` executes one round and returns the
    observations; ``done(position, result)`` receives each finished episode. ``compiled``:
    plain replay episodes are played on the compiled engine (``False``: every episode on its
    environment's own Python engine, its specification).

    The episodes in flight form ``groups`` groups of at most ``in_flight`` whose rounds take
    turns, exactly as :func:`~autotts.sandbox.remote.play_remote` plays them: each group
    takes the next units of the job, in job order, right before its round."""

    def __init__(
        self,
        units,
        in_flight: int,
        max_steps: int,
        traced,
        done,
        budget=None,
        groups: int = 2,
        slow: bool = False,
        compiled: bool = True,
    ):
        self.units, self.in_flight, self.max_steps = units, in_flight, max_steps
        self.slow = slow  # rounds take long (live engines): not counted as the worker's time
        self.traced, self.done, self.compiled = traced, done, compiled
        self.tracing = 0  # traced episodes in flight on the compiled engine
        self.budget = budget or TraceBudget()
        self.next = 0
        self.groups: list[list[_Episode]] = [[] for _ in range(groups)]
        self.turns: deque[int] = deque()
        for group in range(groups):
            self._fill(group)

    @property
    def finished(self) -> bool:
        return not self.turns

    def _fill(self, group: int) -> None:
        mine = self.groups[group]
        while len(mine) < self.in_flight and self.next < len(self.units):
            env, question, seed = self.units[self.next]
            result = EpisodeResult(question, seed, None, 0, 0, 0, 0)
            source = env.episode_source(question, seed)
            episode = _Episode(self.next, source, result, self.traced(self.next), self.compiled)
            self.tracing += episode.log is not None and episode.core is not None
            mine.append(episode)
            self.next += 1
        if mine:
            self.turns.append(group)

    def serve(self, data: bytes) -> list:
        """One round: ``data`` (the round frame) holds an entry per episode of the group whose
        turn it is, in order."""
        if not self.turns:
            raise ProtocolError("a round after the last episode ended")
        group = self.turns.popleft()
        mine = self.groups[group]
        actions = decode_round(data, len(mine))
        observations, pending = act_round(
            [episode.core for episode in mine], actions, self.max_steps, MAX_EPISODE_IDS
        )
        if self.tracing:
            for episode, action, observation in zip(mine, actions, observations, strict=True):
                if episode.log is not None and observation is not None:
                    episode.append(_log_entry(action, observation))
        ended = set()
        for j in pending:  # answers, failures, the Python engines, refusals and limits
            episode, action = mine[j], actions[j]
            observations[j] = observation = self._settle(episode, action)
            if observation == 0 or observation == ENDED_BY_ENGINE:
                self._end(episode)
                ended.add(j)
        if ended:
            self.groups[group] = [e for j, e in enumerate(mine) if j not in ended]
        self._fill(group)
        return observations

    def _settle(self, episode: _Episode, action):
        """The observation of an entry :func:`act_round` left: ``0`` for the episode's own
        answer or failure (it ends), else what :meth:`_step` gives."""
        if type(action) is not tuple:
            return self._step(episode, action)
        result = episode.result
        if action[0] == "=":
            result.answer, result.reason = action[1], action[2]
        elif action[0] == "?":  # an action refused before it crossed: a step
            counter = episode.counter
            counter.steps += 1
            over = counter.steps > self.max_steps
            result.error = step_limit_message(self.max_steps) if over else action[1]
        else:
            result.error = action[1]
        return 0

    def _step(self, episode: _Episode, action):
        counter, engine = episode.counter, episode.engine
        counter.steps += 1
        try:
            if counter.steps > self.max_steps:
                raise ControllerFailure(step_limit_message(self.max_steps))
            counter.named += len(getattr(action, "ids", ()))
            if counter.named > MAX_EPISODE_IDS:
                raise ControllerFailure(
                    f"the episode named more than {MAX_EPISODE_IDS:,} branch ids in all"
                )
            if episode.fast is None:
                observation = engine.act(action)
                if episode.log is not None:
                    episode.append(_log_entry(action, observation))
                return observation
            state = engine.state
            n_finals = len(state.finals)
            if episode.fast and type(action) in FAST and not _repeats(action):
                reply = perform(engine, action, episode.append)
                return observe_fast(state, action, reply, n_finals)
            before = touched_before(state, action)
            reply = perform(engine, action, episode.append)
        except (ActionError, ControllerFailure, EngineFailure) as exc:  # as in process
            episode.result.error = error_text(exc, None)
            return ENDED_BY_ENGINE
        except Exception as exc:
            episode.result.error = f"invalid action arguments: {type(exc).__name__}: {exc}"
            return ENDED_BY_ENGINE
        return observe_changes(state, before, reply, n_finals)

    def _end(self, episode: _Episode) -> None:
        result = episode.result
        if result.error is not None:
            result.answer = None
        text = self.budget.text
        result.answer = text(result.answer)
        result.reason = text(result.reason and result.reason[:MAX_KEPT_REASON])
        result.error = text(result.error)
        if episode.fast is None:
            result.tokens, result.probe_tokens, result.opened = episode.engine.totals()
            result.steps = episode.counter.steps
        else:
            finish_result(episode.engine, result, episode.steps)
        if episode.log is not None:
            result.actions, result.source = self._kept(episode), episode.source
            self.tracing -= episode.core is not None
        episode.counter = episode.append = None  # (itself and its own method: cycles that
        self.done(episode.unit, result)  # would hold the engine until a collection)

    def _kept(self, episode: _Episode) -> list:
        log, left, room = episode.log, self.budget.left, 0
        for entry in log[:MAX_TRACE_ACTIONS]:
            weight = _weight(entry)
            if weight > left:
                break
            left, room = left - weight, room + 1
        self.budget.left = left
        if len(log) > room or episode.kept > MAX_TRACE_IDS:
            tokens = log[-1][4] if log else 0
            del log[room:]
            cut = f"trace cut: {len(log)} of {episode.result.steps} actions kept"
            log.append((NOTE, (), cut, False, tokens))
        return log
