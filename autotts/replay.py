"""Replay environment: runs a controller against pre-collected branches, exactly as the
reference evaluator of the AutoTTS paper costs them.

Semantics (``environments/README.md`` has the cost convention):

- seed ``s`` orders each question's branches by ``random.Random(s).shuffle``; controllers
  open branches in that order;
- extending a branch by one interval costs ``delta`` tokens and reveals the next probe; when a
  branch has no probes left, the next extension finishes it, costs the remaining
  ``branch_tokens - spent`` (never negative) and reveals its final answer;
- ``Read`` costs the branch's full ``branch_tokens`` and reveals its final answer;
- probes cost ``probe_cost`` tokens each (0 by default, like the paper).

The environment keeps gold answers apart from everything the controller can reach: episodes
get an :class:`~autotts.contract.EpisodeState` holding only revealed data, and scoring happens
after the controller returned.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat

from .contract import (
    ActionError,
    Answer,
    Branch,
    Continue,
    Controller,
    ControllerFailure,
    EpisodeState,
    Note,
    Probe,
    Prune,
    Read,
)
from .store import QuestionRecord, intern_answer, load_environment_records

DEFAULT_MAX_STEPS = 20_000

# Trace event kinds (also the "action" field of the JSONL schema in traces/).
BRANCH, CONTINUE, PROBE, PRUNE, READ, NOTE = "branch", "continue", "probe", "prune", "read", "note"


@lru_cache(maxsize=4096)
def branch_order(seed: int, n: int) -> tuple[int, ...]:
    """The order in which seed ``seed`` presents ``n`` branches (reference shuffle)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return tuple(order)


@dataclass(frozen=True)
class ReplayQuestion:
    """A question's branches in the engine's compact form (answers interned)."""

    text: str
    delta: int
    probes: tuple[tuple[str, ...], ...]
    tokens: tuple[int, ...]
    finals: tuple[str, ...]

    @classmethod
    def from_record(cls, record: QuestionRecord) -> ReplayQuestion:
        branches = record.each_branch
        return cls(
            text=record.question,
            delta=record.probe_freq,
            probes=tuple(tuple(intern_answer(p) for p in probes) for probes, _, _ in branches),
            tokens=tuple(tokens for _, tokens, _ in branches),
            finals=tuple(intern_answer(final) for _, _, final in branches),
        )


@dataclass(slots=True)
class EpisodeResult:
    """Outcome of one episode. ``trace`` holds tuples ``(action, ids, revealed, finished,
    tokens_after)`` (see :func:`autotts.traces.episode_record` for the JSON form)."""

    question: int
    seed: int
    answer: str | None
    tokens: int
    probe_tokens: int
    opened: int
    steps: int
    reason: str = ""
    error: str | None = None
    trace: list[tuple] | None = field(default=None, repr=False)


class ReplayEnvironment:
    """A replay store made executable. ``run_episode`` plays one (question, seed) episode."""

    def __init__(
        self,
        env_id: str,
        records: Sequence[QuestionRecord],
        probe_cost: int = 0,
        max_steps: int = DEFAULT_MAX_STEPS,
        branch_limit: int | None = None,
    ):
        self.env_id = env_id
        self.questions = [ReplayQuestion.from_record(r) for r in records]
        self.probe_cost = probe_cost
        self.max_steps = max_steps
        self.branch_limit = branch_limit
        self.order_cache_size = 100_000
        self._orders: dict[tuple[int, int], tuple] = {}
        # Kept for scoring only; never passed to a controller.
        self._gold = tuple(intern_answer(r.gold_answer) for r in records)

    @classmethod
    def without_gold(
        cls, env_id: str, questions: Sequence[ReplayQuestion], **kwargs
    ) -> ReplayEnvironment:
        """An environment that can play episodes but not score them (for sandboxes: the
        gold answers never reach the process running untrusted controllers)."""
        env = cls(env_id, [], **kwargs)
        env.questions = list(questions)
        return env

    @classmethod
    def load(cls, env_id: str, env_dir=None, **kwargs) -> ReplayEnvironment:
        """Load and validate the store of ``env_id`` (see :mod:`autotts.store`)."""
        return cls(env_id, load_environment_records(env_id, env_dir), **kwargs)

    def __len__(self) -> int:
        return len(self.questions)

    def is_correct(self, question: int, answer: str | None) -> bool:
        """Exact string match with the gold answer, as in the reference evaluator."""
        return answer is not None and answer == self._gold[question]

    def gold(self, question: int) -> str:
        """The gold answer of a question (for scoring and reports, never for controllers)."""
        return self._gold[question]

    def _episode_order(self, question: int, seed: int) -> tuple:
        """Per-(question, seed) branch data in opening order: probes, lengths, totals, finals."""
        key = (question, seed)
        cached = self._orders.get(key)
        if cached is None:
            q = self.questions[question]
            order = branch_order(seed, len(q.tokens))
            probes = tuple(q.probes[j] for j in order)
            cached = (
                probes,
                tuple(len(p) for p in probes),
                tuple(q.tokens[j] for j in order),
                tuple(q.finals[j] for j in order),
            )
            if len(self._orders) < self.order_cache_size:
                self._orders[key] = cached
        return cached

    def run_episode(
        self,
        controller: Controller,
        params: dict,
        question: int,
        seed: int,
        record_trace: bool = True,
    ) -> EpisodeResult:
        """Play one episode; controller failures are returned in ``EpisodeResult.error``."""
        q = self.questions[question]
        episode = _Episode(
            q, self._episode_order(question, seed), self.probe_cost, self.branch_limit
        )
        state = episode.state
        result = EpisodeResult(question, seed, None, 0, 0, 0, 0)
        trace: list[tuple] | None = [] if record_trace else None
        result.trace = trace
        max_steps = self.max_steps
        steps = 0
        finished, finals, answer = state.finished, state.finals, state.answer
        try:
            gen = controller.run(state, **params)
            send = gen.send
            reply = None
            while True:
                action = send(reply)
                steps += 1
                if steps > max_steps:
                    gen.close()
                    raise ControllerFailure(
                        f"step limit exceeded: {max_steps} actions without an answer "
                        "(does the controller loop forever?)"
                    )
                n_finals = len(finals)
                reply = None
                if isinstance(action, Continue):
                    ids = action.ids
                    episode.extend(ids, action.steps, action.probe)
                    event = CONTINUE
                elif isinstance(action, Read):
                    ids = episode.read(action.k)
                    reply = list(ids)
                    if trace is not None:
                        ids = tuple(reply)
                        trace.append((READ, ids, tuple(finals[n_finals:]), ids, state.tokens))
                    continue
                elif isinstance(action, Branch):
                    ids = episode.open(action.k)
                    episode.extend(ids, 1, action.probe)
                    reply = list(ids)
                    event = BRANCH
                elif isinstance(action, Probe):
                    episode.probe(ids := action.ids)
                    event = PROBE
                elif isinstance(action, Prune):
                    episode.prune(ids := action.ids)
                    event = PRUNE
                elif isinstance(action, Note):
                    if trace is not None:
                        trace.append((NOTE, (), (str(action.text),), (), state.tokens))
                    continue
                else:
                    raise ActionError(
                        f"controller yielded {action!r}; expected an action such as Branch, "
                        "Continue, Probe, Prune, Read or Note (from autotts)"
                    )
                if trace is not None:
                    ids = tuple(ids)
                    done = tuple(i for i in ids if finished[i]) if len(finals) != n_finals else ()
                    revealed = () if event is PRUNE else tuple(map(answer.__getitem__, ids))
                    trace.append((event, ids, revealed, done, state.tokens))
        except StopIteration as stop:
            value = stop.value
            if isinstance(value, Answer):
                result.reason = value.reason
                value = value.value
            if isinstance(value, str):
                result.answer = value
            else:
                result.error = (
                    f"controller returned {type(value).__name__} {value!r}; it must return the "
                    "answer as a str (or Answer(value, reason))"
                )
        except (ActionError, ControllerFailure) as exc:
            result.error = str(exc)
        except (IndexError, TypeError) as exc:
            result.error = f"invalid action or controller bug: {type(exc).__name__}: {exc}"
        except Exception as exc:  # the controller's own code raised
            result.error = f"controller raised {type(exc).__name__}: {exc}"
        result.tokens = state.tokens
        result.probe_tokens = state.probe_tokens
        result.opened = len(state.depth)
        result.steps = steps
        return result


class _Episode:
    """Mutable engine side of one replay episode. Holds the unrevealed data; the controller
    only ever sees ``state``, which holds no reference back to this object."""

    __slots__ = ("state", "live", "probes", "lengths", "totals", "finals", "delta", "probe_cost")

    def __init__(self, q: ReplayQuestion, order: tuple, probe_cost: int, limit: int | None):
        self.probes, self.lengths, self.totals, self.finals = order
        self.delta = q.delta
        self.probe_cost = probe_cost
        n = len(self.lengths)
        self.state = EpisodeState(q.text, q.delta, n if limit is None else min(n, limit))
        self.live: list[bool] = []  # neither finished nor pruned

    def _reserve(self, k) -> tuple[int, int]:
        """Ids ``start..end`` for ``k`` new branches, or a clear error."""
        start = len(self.live)
        if type(k) is not int or k < 0:
            raise ActionError(f"branch count must be a non-negative int, got {k!r}")
        end = start + k
        if end > self.state.max_branches:
            raise ActionError(
                f"cannot open {k} more branches: {start} of {self.state.max_branches} already "
                "opened (state.max_branches)"
            )
        return start, end

    def open(self, k) -> range:
        start, end = self._reserve(k)
        state = self.state
        state.depth.extend([0] * k)
        state.answer.extend([None] * k)
        state.history.extend([] for _ in range(k))
        state.finished.extend([False] * k)
        state.pruned.extend([False] * k)
        self.live.extend([True] * k)
        return range(start, end)

    def _finish(self, i: int, cost_before: int) -> int:
        """Finish branch ``i`` (its last extension); return that extension's cost."""
        state = self.state
        rest = self.totals[i] - cost_before
        state.depth[i] = self.lengths[i] + 1
        a = self.finals[i]
        state.answer[i] = a
        state.history[i].append(a)
        state.finished[i] = True
        self.live[i] = False
        state.finals.append(a)
        return rest if rest > 0 else 0

    def extend(self, ids, k, probe: bool) -> None:
        if type(k) is int:
            if k < 1:
                raise ActionError(f"steps must be >= 1, got {k!r}")
            steps = None
        else:
            steps = list(k)
            if len(steps) != len(ids):
                raise ActionError(f"steps has {len(steps)} entries for {len(ids)} branch ids")
            if steps and (not set(map(type, steps)) <= {int} or min(steps) < 1):
                raise ActionError(f"steps must be ints >= 1, got {k!r}")
        state = self.state
        try:
            n_steps, extra, n_finished = self._extend_each(ids, k, steps, probe)
        except IndexError:
            bad = next((i for i in ids if not 0 <= i < len(state.depth)), None)
            raise ActionError(_inactive_message(bad, state.finished, state.pruned)) from None
        probe_cost = (len(ids) - n_finished) * self.probe_cost if probe else 0
        state.tokens += self.delta * n_steps + extra + probe_cost
        state.probe_tokens += probe_cost

    def _extend_each(self, ids, k, steps, probe: bool) -> tuple[int, int, int]:
        """Advance branches; return (full intervals generated, finishing cost, branches finished).
        This is the hot loop of replay."""
        state = self.state
        depth, answer, history = state.depth, state.answer, state.history
        live, lengths, probes = self.live, self.lengths, self.probes
        n_steps = extra = n_finished = 0
        if ids and min(ids) < 0:
            raise ActionError(_inactive_message(min(ids), state.finished, state.pruned))
        pairs = zip(ids, steps, strict=True) if steps is not None else zip(ids, repeat(k))
        for i, k in pairs:
            if not live[i]:
                raise ActionError(_inactive_message(i, state.finished, state.pruned))
            d = depth[i] + k
            if d <= lengths[i]:
                depth[i] = d
                n_steps += k
                if probe:
                    a = probes[i][d - 1]
                    answer[i] = a
                    history[i].append(a)
            else:
                n_steps += lengths[i] - depth[i]
                extra += self._finish(i, self.delta * lengths[i])
                n_finished += 1
        return n_steps, extra, n_finished

    def read(self, k) -> range:
        start, end = self._reserve(k)
        state = self.state
        finals = self.finals[start:end]
        state.depth.extend([n + 1 for n in self.lengths[start:end]])
        state.answer.extend(finals)
        state.history.extend([a] for a in finals)
        state.finished.extend([True] * k)
        state.pruned.extend([False] * k)
        self.live.extend([False] * k)
        state.finals.extend(finals)
        state.tokens += sum(self.totals[start:end])
        return range(start, end)

    def probe(self, ids) -> None:
        state = self.state
        depth = state.depth
        for i in ids:
            if i < 0 or i >= len(depth):
                raise ActionError(_inactive_message(i, state.finished, state.pruned))
            if state.finished[i] or depth[i] == 0:
                continue
            a = self.probes[i][depth[i] - 1]
            state.answer[i] = a
            state.history[i].append(a)
            state.tokens += self.probe_cost
            state.probe_tokens += self.probe_cost

    def prune(self, ids) -> None:
        state = self.state
        for i in ids:
            if i < 0 or i >= len(state.depth):
                raise ActionError(_inactive_message(i, state.finished, state.pruned))
            state.pruned[i] = True
            self.live[i] = False


def _inactive_message(i, finished, pruned) -> str:
    if not isinstance(i, int) or i < 0 or i >= len(finished):
        return f"branch id {i!r} was never opened ({len(finished)} branches are open)"
    status = "finished" if finished[i] else "pruned"
    return f"branch {i} is {status}; only active branches can be continued"
