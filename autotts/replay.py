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

import contextlib
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat
from operator import itemgetter

from .contract import (
    ActionError,
    Answer,
    Branch,
    Continue,
    Controller,
    ControllerFailure,
    EpisodeState,
    Generate,
    Note,
    Probe,
    Prune,
    Read,
)
from .store import QuestionRecord, intern_answer, load_environment_records

DEFAULT_MAX_STEPS = 20_000

# The replay loop compiled from autotts/_replay_loop.c, when the install built it; the
# pure-Python loop below is its specification (AUTOTTS_PURE_PYTHON=1 forces it).
_compiled_advance = None
if not os.environ.get("AUTOTTS_PURE_PYTHON"):
    with contextlib.suppress(ImportError):
        from ._replay_loop import advance as _compiled_advance

# Trace event kinds (also the "action" field of the JSONL schema in traces/).
BRANCH, CONTINUE, PROBE, PRUNE, READ, NOTE = "branch", "continue", "probe", "prune", "read", "note"
GENERATE = "generate"


@lru_cache(maxsize=4096)
def branch_order(seed: int, n: int) -> tuple[int, ...]:
    """The order in which seed ``seed`` presents ``n`` branches (reference shuffle)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return tuple(order)


@lru_cache(maxsize=4096)
def _picker(order: tuple[int, ...]):
    """A function taking the items of a sequence in ``order``, as a tuple (fast: C)."""
    if len(order) > 1:
        return itemgetter(*order)
    return lambda seq: tuple(seq[i] for i in order)


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
    """Outcome of one episode.

    ``actions`` is the episode's action log (recorded with ``record_trace=True``): one entry
    per executed action, from which :attr:`trace` rebuilds, on first access, the readable trace
    of tuples ``(action, ids, revealed, finished, tokens_after)`` (see
    :func:`autotts.traces.episode_record` for its JSON form). Logging actions and replaying
    them on demand keeps recording cheap in the hot loop while every trace stays available.
    """

    question: int
    seed: int
    answer: str | None
    tokens: int
    probe_tokens: int
    opened: int
    steps: int
    reason: str = ""
    error: str | None = None
    actions: list[tuple] | None = field(default=None, repr=False)
    source: tuple | None = field(default=None, repr=False, compare=False)
    trace_cache: list[tuple] | None = field(default=None, repr=False, compare=False)
    seconds: float = field(default=0.0, repr=False, compare=False)  # wall clock (live runs)
    cost: float | None = None  # priced spending (cross-model environments: FLOPs or $)
    model_tokens: dict[str, int] | None = field(default=None, compare=False)

    @property
    def trace(self) -> list[tuple] | None:
        """The readable trace (``None`` when the episode ran with ``record_trace=False``).
        Replay rebuilds it from ``actions`` and ``source``; live episodes record it as they go
        (in ``trace_cache``)."""
        if self.trace_cache is None and self.actions is not None and self.source is not None:
            self.trace_cache = _rebuild_trace(self.source, self.actions)
        return self.trace_cache


class EngineFailure(RuntimeError):
    """The engine behind an episode (e.g. a live inference backend) failed; not the
    controller's fault, but the episode cannot go on."""


class EpisodeRunner:
    """What replay environments share: playing the episode ``episode_source`` describes."""

    max_steps: int

    def episode_source(self, question: int, seed: int) -> tuple:
        raise NotImplementedError

    def run_episode(
        self,
        controller: Controller,
        params: dict,
        question: int,
        seed: int,
        record_trace: bool = True,
    ) -> EpisodeResult:
        """Play one episode; controller failures are returned in ``EpisodeResult.error``."""
        source = self.episode_source(question, seed)
        result = EpisodeResult(question, seed, None, 0, 0, 0, 0)
        log = play(source[0](*source[1:]), controller, params, result, self.max_steps)
        if record_trace:
            result.actions, result.source = log, source
        return result


class ReplayEnvironment(EpisodeRunner):
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
            pick = _picker(branch_order(seed, len(q.tokens)))
            probes = pick(q.probes)
            cached = (probes, tuple(map(len, probes)), pick(q.tokens), pick(q.finals))
            if len(self._orders) < self.order_cache_size:
                self._orders[key] = cached
        return cached

    @property
    def model(self) -> str:
        """The model whose branches the store holds (the first part of the environment id)."""
        return self.env_id.split("/")[0]

    def episode_source(self, question: int, seed: int) -> tuple:
        """What an episode of ``(question, seed)`` replays: the episode class and its
        arguments (set as ``EpisodeResult.source`` to rebuild the trace of an action log
        recorded elsewhere, e.g. in a sandbox worker)."""
        return (
            _Episode,
            self.questions[question],
            self._episode_order(question, seed),
            self.probe_cost,
            self.branch_limit,
            self.model,
        )


def play(episode, controller: Controller, params: dict, result: EpisodeResult, max_steps: int):
    """Run ``controller`` on ``episode`` (a replay or live episode engine: ``state``,
    ``open``, ``extend``, ``read``, ``probe``, ``prune``, ``tokens``, ``probe_tokens``,
    ``live``, and ``cost``/``model_tokens``, ``None`` where tokens are the cost), fill
    ``result`` and return the action log. Failures of the controller or of the
    engine end the episode with ``result.error`` set."""
    state = episode.state
    log: list[tuple] = []
    append = log.append
    steps = 0
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
            reply = None
            kind = type(action)  # exact types: a subclass could answer differently each time
            if kind is Continue:
                ids = tuple(action.ids)
                k = action.steps
                if type(k) is not int:
                    if not isinstance(k, Sequence) or isinstance(k, str):
                        _requested_intervals(ids, k)  # raises the clear error
                    k = tuple(k)
                probe = _flag(action.probe)
                episode.extend(ids, k, probe)
                append((CONTINUE, ids, k, probe, episode.tokens))
            elif kind is Branch:
                model, probe = _model(action.model), _flag(action.probe)
                ids = tuple(episode.open(action.k, model))
                episode.extend(ids, 1, probe)
                reply = list(ids)
                append((BRANCH, ids, model, probe, episode.tokens))
            elif kind is Read:
                model = _model(action.model)
                ids = tuple(episode.read(action.k, model))
                reply = list(ids)
                append((READ, ids, model, False, episode.tokens))
            elif kind is Probe:
                episode.probe(ids := tuple(action.ids))
                append((PROBE, ids, 0, True, episode.tokens))
            elif kind is Prune:
                episode.prune(ids := tuple(action.ids))
                append((PRUNE, ids, 0, False, episode.tokens))
            elif kind is Note:
                append((NOTE, (), str(action.text), False, episode.tokens))
            elif kind is Generate:
                model = _model(action.model)
                reply = episode.generate(action.prompt, model, action.max_tokens)
                append((GENERATE, (), model, False, episode.tokens))
            else:
                raise ActionError(
                    f"controller yielded {action!r}; expected an action such as Branch, "
                    "Continue, Probe, Prune, Read, Note or Generate (from autotts, not a "
                    "subclass)"
                )
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
    except EngineFailure as exc:
        result.error = f"inference backend failed: {exc}"
    except (IndexError, TypeError) as exc:
        result.error = f"invalid action or controller bug: {type(exc).__name__}: {exc}"
    except Exception as exc:  # the controller's own code raised
        result.error = f"controller raised {type(exc).__name__}: {exc}"
    result.tokens = episode.tokens
    result.probe_tokens = episode.probe_tokens
    if episode.cost is not None:  # priced environments (cross-model replay)
        result.cost = episode.cost
        result.model_tokens = dict(episode.model_tokens)
    result.opened = len(episode.live)
    result.steps = steps
    return log


def _rebuild_trace(source: tuple, actions: list[tuple]) -> list[tuple]:
    """Replay an action log on a fresh episode and record what each action revealed (the log
    keeps a ``Branch``/``Read``'s model where the step count of a ``Continue`` goes)."""
    episode = source[0](*source[1:])
    state = episode.state
    finished, finals, answer = state.finished, state.finals, state.answer
    trace = []
    for event, ids, k, probe, tokens in actions:
        n_finals = len(finals)
        if event == CONTINUE:
            episode.extend(ids, k, probe)
        elif event == BRANCH:
            ids = tuple(episode.open(len(ids), k))
            episode.extend(ids, 1, probe)
        elif event == READ:
            ids = tuple(episode.read(len(ids), k))
            trace.append((READ, ids, tuple(finals[n_finals:]), ids, tokens))
            continue
        elif event == PROBE:
            episode.probe(ids)
        elif event == PRUNE:
            episode.prune(ids)
        else:
            trace.append((NOTE, (), (k,), (), tokens))
            continue
        done = tuple(i for i in ids if finished[i]) if len(finals) != n_finals else ()
        revealed = () if event == PRUNE else tuple(map(answer.__getitem__, ids))
        trace.append((event, ids, revealed, done, tokens))
    return trace


class _Episode:
    """Mutable engine side of one replay episode. Holds the unrevealed data; the controller
    only ever sees ``state``, which holds no reference back to this object.

    Everything the engine accounts with (depths, liveness, tokens, the branch limit) is kept
    here, privately: ``state`` is a mirror written after every change, so a controller that
    modifies its state (by mistake or on purpose) cannot change its cost or its limits.
    """

    __slots__ = (
        "state", "live", "depth", "done", "probes", "lengths", "totals", "final_of", "delta",
        "probe_cost", "max_branches", "tokens", "probe_tokens", "n_finished", "model",
    )  # fmt: skip
    cost = model_tokens = None  # unpriced: tokens are the cost

    def __init__(
        self, q: ReplayQuestion, order: tuple, probe_cost: int, limit: int | None, model: str
    ):
        self.probes, self.lengths, self.totals, self.final_of = order
        self.delta = q.delta
        self.probe_cost = probe_cost
        self.model = model
        n = len(self.lengths)
        self.max_branches = n if limit is None else min(n, limit)
        self.state = EpisodeState(q.text, q.delta, self.max_branches, (model,))
        self.live: list[bool] = []  # neither finished nor pruned
        self.depth: list[int] = []
        self.done: list[bool] = []  # finished
        self.tokens = self.probe_tokens = self.n_finished = 0

    def _charge(self, tokens: int, probe_tokens: int = 0) -> None:
        self.tokens += tokens + probe_tokens
        self.probe_tokens += probe_tokens
        self.state.tokens = self.tokens
        self.state.probe_tokens = self.probe_tokens

    def _reserve(self, k, model) -> tuple[int, int]:
        """Ids ``start..end`` for ``k`` new branches of ``model``, or a clear error."""
        start = len(self.live)
        if type(k) is not int or k < 0:
            raise ActionError(f"branch count must be a non-negative int, got {k!r}")
        if model is not None and model != self.model:
            raise ActionError(
                f"model {model!r} is not available: this environment replays {self.model} "
                "only (state.models); use model=None or a cross-model environment"
            )
        end = start + k
        if end > self.max_branches:
            raise ActionError(
                f"cannot open {k} more branches: {start} of {self.max_branches} already "
                "opened (state.max_branches)"
            )
        if len(self.state.depth) != start:
            raise ActionError(_MODIFIED)
        return start, end

    def open(self, k, model=None) -> range:
        start, end = self._reserve(k, model)
        state = self.state
        state.model.extend([self.model] * k)
        for visible in (state.depth, self.depth):
            visible.extend([0] * k)
        state.answer.extend([None] * k)
        state.history.extend([] for _ in range(k))
        for flags in (state.finished, state.pruned, self.done):
            flags.extend([False] * k)
        self.live.extend([True] * k)
        return range(start, end)

    def _finish(self, i: int, k: int) -> int:
        """Finish branch ``i`` by an extension of ``k`` intervals. Such an extension generates
        the remaining full intervals plus the rest of the branch's tokens (never negative);
        returns how many tokens fewer than ``k * delta`` it cost."""
        state = self.state
        length = self.lengths[i]
        intervals = length - self.depth[i]
        rest = self.totals[i] - self.delta * length
        self.depth[i] = state.depth[i] = length + 1
        a = self.final_of[i]
        state.answer[i] = a
        state.history[i].append(a)
        self.done[i] = state.finished[i] = True
        self.live[i] = False
        state.finals.append(a)
        self.n_finished += 1
        return (k - intervals) * self.delta - (rest if rest > 0 else 0)

    def extend(self, ids, k, probe: bool) -> None:
        finished_before = self.n_finished
        try:
            if _compiled_advance is None:
                nominal = _requested_intervals(ids, k)
                shortfall = self._extend_python(ids, k, probe)
            else:
                state = self.state
                nominal, finishing = _compiled_advance(
                    self.probes, self.depth, self.live, state.depth, state.answer,
                    state.history, self._raise_inactive, ids, k, probe,
                )  # fmt: skip
                shortfall = 0
                for j in finishing:  # branches that reached their end, in order
                    shortfall += self._finish(ids[j], k if type(k) is int else k[j])
        except IndexError:
            self._raise_bad_id(ids)
        except (TypeError, ValueError):  # the compiled loop's checks: say what is wrong
            _requested_intervals(ids, k)
            _check_ids(ids)
            raise
        n_probed = len(ids) - self.n_finished + finished_before if probe else 0
        self._charge(self.delta * nominal - shortfall, n_probed * self.probe_cost)

    def _raise_inactive(self, i):
        raise ActionError(_inactive_message(i, self.live, self.state.pruned))

    def _raise_bad_id(self, ids):
        state, n = self.state, len(self.live)
        if any(len(v) != n for v in (state.depth, state.answer, state.history)):
            raise ActionError(_MODIFIED) from None
        bad = next((i for i in ids if not 0 <= i < n), None)
        raise ActionError(_inactive_message(bad, self.live, state.pruned)) from None

    def _extend_python(self, ids, k, probe: bool) -> int:
        """The pure-Python replay loop, the specification of ``autotts/_replay_loop.c``."""
        _check_ids(ids)
        if ids and min(ids) < 0:
            raise IndexError(min(ids))
        return (self._extend_probing if probe else self._extend_silently)(ids, k)

    def _extend_probing(self, ids, k) -> int:
        """The hot loop of replay: advance each branch by ``k`` intervals (one int, or one per
        branch) and reveal the probe at the end. Returns the tokens saved by branches that
        finished (see :meth:`_finish`)."""
        state = self.state
        depth, live, probes = self.depth, self.live, self.probes
        visible, answer, history = state.depth, state.answer, state.history
        shortfall = 0
        for i, n in _with_steps(ids, k):
            if not live[i]:
                self._raise_inactive(i)
            d = depth[i] + n
            try:
                a = probes[i][d - 1]
            except IndexError:  # past the last probe: the branch finishes
                shortfall += self._finish(i, n)
                continue
            depth[i] = visible[i] = d
            answer[i] = a
            history[i].append(a)
        return shortfall

    def _extend_silently(self, ids, k) -> int:
        """Like :meth:`_extend_probing`, without revealing probes (``probe=False``)."""
        depth, live, lengths, visible = self.depth, self.live, self.lengths, self.state.depth
        shortfall = 0
        for i, n in _with_steps(ids, k):
            if not live[i]:
                self._raise_inactive(i)
            d = depth[i] + n
            if d > lengths[i]:
                shortfall += self._finish(i, n)
            else:
                depth[i] = visible[i] = d
        return shortfall

    def read(self, k, model=None) -> range:
        start, end = self._reserve(k, model)
        state = self.state
        state.model.extend([self.model] * k)
        finals = self.final_of[start:end]
        depths = [n + 1 for n in self.lengths[start:end]]
        state.depth.extend(depths)
        self.depth.extend(depths)
        state.answer.extend(finals)
        state.history.extend([[a] for a in finals])
        for flags in (state.finished, self.done):
            flags.extend([True] * k)
        state.pruned.extend([False] * k)
        self.live.extend([False] * k)
        state.finals.extend(finals)
        self.n_finished += k
        self._charge(sum(self.totals[start:end]))
        return range(start, end)

    def generate(self, prompt, model, max_tokens) -> str:
        raise ActionError(
            "Generate needs a live backend: replay stores hold answers, not text (run this "
            "controller live with `autotts validate`)"
        )

    def probe(self, ids) -> None:
        _check_ids(ids)
        state = self.state
        n_probed = 0
        for i in ids:
            if not 0 <= i < len(self.depth):
                self._raise_bad_id(ids)
            if self.done[i] or self.depth[i] == 0:
                continue
            a = self.probes[i][self.depth[i] - 1]
            state.answer[i] = a
            state.history[i].append(a)
            n_probed += 1
        self._charge(0, n_probed * self.probe_cost)

    def prune(self, ids) -> None:
        _check_ids(ids)
        state = self.state
        for i in ids:
            if not 0 <= i < len(self.depth):
                self._raise_bad_id(ids)
            state.pruned[i] = True
            self.live[i] = False


def _with_steps(ids, k):
    """``(id, steps)`` pairs of a ``Continue`` whose steps are one int or one per id."""
    return zip(ids, repeat(k)) if isinstance(k, int) else zip(ids, k, strict=True)


MAX_STEPS_PER_ACTION = 1_000_000  # steps of one Continue, per branch (far past any branch's end)


def _flag(value) -> bool:
    if value is not True and value is not False:
        raise ActionError(f"probe must be True or False, got {value!r}")
    return value


def _model(value):
    if value is not None and type(value) is not str:
        raise ActionError(f"model must be None or a model name (str), got {value!r}")
    return value


def _check_ids(ids) -> None:
    """Branch ids must be built-in ints (not bools, not subclasses)."""
    for i in ids:
        if type(i) is not int:
            raise ActionError(f"branch ids must be ints, got {i!r} ({type(i).__name__})")


def _requested_intervals(ids, k) -> int:
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


_MODIFIED = (
    "the controller modified its EpisodeState (it is read-only: copy a list before sorting "
    "or changing it)"
)


def _inactive_message(i, live, pruned) -> str:
    if not isinstance(i, int) or i < 0 or i >= len(live):
        return f"branch id {i!r} was never opened ({len(live)} branches are open)"
    status = "pruned" if pruned[i] else "finished"
    return f"branch {i} is {status}; only active branches can be continued"
