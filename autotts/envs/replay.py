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
get an :class:`~autotts.core.contract.EpisodeState` holding only revealed data, and scoring happens
after the controller returned.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

from ..core.arguments import STATE_MODIFIED
from ..core.contract import ActionError, EpisodeState
from ..core.engine import (
    DEFAULT_MAX_STEPS,
    check_finished,
    check_ids,
    inactive_message,
    requested_intervals,
)
from ..core.environment import EpisodeRunner
from ..core.signals import RevealsSignals
from .replay_loop import PythonReplayLoop
from .stores import QuestionRecord, intern_answer, load_environment_records

# The replay loop compiled from autotts/envs/_replay_loop.c, when the install built it; the
# pure-Python loop below is its specification (AUTOTTS_PURE_PYTHON=1 forces it).
_compiled_advance = None
if not os.environ.get("AUTOTTS_PURE_PYTHON"):
    with contextlib.suppress(ImportError):
        from ._replay_loop import advance as _compiled_advance


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
    signals: dict[str, tuple[tuple[float | None, ...], ...]] | None = (
        None  # see autotts.core.signals
    )
    width_only: bool = (
        False  # no probe answers: whole-branch reads only (autotts.envs.sample_import)
    )

    @classmethod
    def from_record(cls, record: QuestionRecord) -> ReplayQuestion:
        branches, signals = record.each_branch, record.signals
        return cls(
            text=record.question,
            delta=record.probe_freq,
            probes=tuple(tuple(intern_answer(p) for p in probes) for probes, _, _ in branches),
            tokens=tuple(tokens for _, tokens, _ in branches),
            finals=tuple(intern_answer(final) for _, _, final in branches),
            signals={k: tuple(map(tuple, v)) for k, v in signals.items()} if signals else None,
            width_only=record.width_only,
        )


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
    def load(
        cls, env_id: str, env_dir=None, canonicalize: bool = False, **kwargs
    ) -> ReplayEnvironment:
        """Load and validate the store of ``env_id`` (see :mod:`autotts.envs.stores`);
        ``canonicalize``: group equivalent answers first (:mod:`autotts.envs.answer_groups`)."""
        records = load_environment_records(env_id, env_dir)
        if canonicalize:
            from .answer_groups import cached_groups, canonical_records
            from .stores import find_environment

            path = find_environment(env_id, env_dir).path
            records = canonical_records(records, cached_groups(path, records))
        return cls(env_id, records, **kwargs)

    def __len__(self) -> int:
        return len(self.questions)

    def token_ceiling(self) -> float:
        """Mean over questions of every branch read in full, each probe priced once: the
        fixed token reference of the hypervolume (:mod:`autotts.results.curve_summaries`)."""
        cost = [sum(q.tokens) + self.probe_cost * sum(map(len, q.probes)) for q in self.questions]
        return sum(cost) / len(cost) if cost else 0.0

    @property
    def width_only(self) -> bool:
        """Whether some question has no probe answers (an imported store not yet probed)."""
        return any(q.width_only for q in self.questions)

    @property
    def signal_names(self) -> frozenset[str]:
        """The signals every question of the store carries (:mod:`autotts.core.signals`)."""
        named = [set(q.signals or ()) for q in self.questions]
        return frozenset(set.intersection(*named) if named else ())

    def is_correct(self, question: int, answer: str | None) -> bool:
        """Exact string match with the gold answer, as in the reference evaluator."""
        return answer is not None and answer == self._gold[question]

    def gold(self, question: int) -> str:
        """The gold answer of a question (for scoring and reports, never for controllers)."""
        return self._gold[question]

    def _episode_order(self, question: int, seed: int) -> tuple:
        """Per-(question, seed) branch data in opening order: probes, lengths, totals, finals
        (and the signals by name, where the store has them)."""
        key = (question, seed)
        cached = self._orders.get(key)
        if cached is None:
            q = self.questions[question]
            pick = _picker(branch_order(seed, len(q.tokens)))
            probes = pick(q.probes)
            cached = (probes, tuple(map(len, probes)), pick(q.tokens), pick(q.finals))
            if q.signals:
                cached += ({name: pick(values) for name, values in q.signals.items()},)
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
        q = self.questions[question]
        return (
            _WidthOnlyEpisode if q.width_only else _SignalEpisode if q.signals else _Episode,
            q,
            self._episode_order(question, seed),
            self.probe_cost,
            self.branch_limit,
            self.model,
        )


class _Episode(PythonReplayLoop):
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
        self.probes, self.lengths, self.totals, self.final_of = order[:4]
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
            raise ActionError(STATE_MODIFIED)
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
                nominal = requested_intervals(ids, k)
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
            requested_intervals(ids, k)
            check_ids(ids)
            raise
        n_probed = len(ids) - self.n_finished + finished_before if probe else 0
        self._charge(self.delta * nominal - shortfall, n_probed * self.probe_cost)

    def _raise_inactive(self, i):
        raise ActionError(inactive_message(i, self.live, self.state.pruned))

    def _raise_bad_id(self, ids):
        state, n = self.state, len(self.live)
        if any(len(v) != n for v in (state.depth, state.answer, state.history)):
            raise ActionError(STATE_MODIFIED) from None
        bad = next((i for i in ids if not 0 <= i < n), None)
        raise ActionError(inactive_message(bad, self.live, state.pruned)) from None

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
        check_ids(ids)
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

    def charge_again(self, i) -> None:
        check_finished(i, self.done)
        self._charge(max(0, self.totals[i] - self.delta * self.lengths[i]))  # the last interval

    def prune(self, ids) -> None:
        check_ids(ids)
        state = self.state
        for i in ids:
            if not 0 <= i < len(self.depth):
                self._raise_bad_id(ids)
            state.pruned[i] = True
            self.live[i] = False


class _SignalEpisode(RevealsSignals, _Episode):
    """A replay episode of a store with per-interval signals (:mod:`autotts.core.signals`)."""

    __slots__ = ("values",)


class _WidthOnlyEpisode(_Episode):
    """A replay episode of a width-only store: whole branches only (``Read``)."""

    __slots__ = ()

    def _no_probes(self, *_, **__) -> None:
        raise ActionError(
            "this store has no probe answers (it was imported from whole samples): only "
            "Read(k) can open branches here. Fill in the probes with `autotts envs probe`, "
            "or run a width controller (self-consistency, ASC, ESC)"
        )

    open = extend = probe = _no_probes  # type: ignore[assignment]
