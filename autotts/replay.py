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

from .contract import (
    Answer,
    Branch,
    Continue,
    Controller,
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


class ActionError(RuntimeError):
    """A controller asked for something the environment cannot do (the message says what)."""


class ControllerFailure(RuntimeError):
    """A controller crashed, misbehaved or ran out of steps during an episode."""


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


@dataclass
class EpisodeResult:
    """Outcome of one episode. ``trace`` holds tuples ``(action, ids, revealed, finished,
    tokens_after)`` (see :func:`autotts.traces.trace_steps` for the JSON form)."""

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
    ):
        self.env_id = env_id
        self.questions = [ReplayQuestion.from_record(r) for r in records]
        self.probe_cost = probe_cost
        self.max_steps = max_steps
        # Kept for scoring only; never passed to a controller.
        self._gold = tuple(intern_answer(r.gold_answer) for r in records)

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
        n_total = len(q.tokens)
        order = branch_order(seed, n_total)
        delta, probe_cost, max_steps = q.delta, self.probe_cost, self.max_steps
        state = EpisodeState(q.text, delta, n_total)
        depth, answer, history = state.depth, state.answer, state.history
        finished, pruned, finals, spent = state.finished, state.pruned, state.finals, state.branch_tokens
        all_probes, all_tokens, all_finals = q.probes, q.tokens, q.finals
        b_probes: list[tuple[str, ...]] = []
        b_total: list[int] = []
        b_final: list[str] = []
        trace: list[tuple] | None = [] if record_trace else None
        total = probes_cost = steps = 0

        def open_branches(k: int) -> list[int]:
            start = len(depth)
            if not isinstance(k, int) or k < 0:
                raise ActionError(f"branch count must be a non-negative int, got {k!r}")
            if start + k > n_total:
                raise ActionError(
                    f"cannot open {k} more branches: {start} of {n_total} already opened "
                    f"(state.max_branches = {n_total})"
                )
            for j in range(start, start + k):
                src = order[j]
                b_probes.append(all_probes[src])
                b_total.append(all_tokens[src])
                b_final.append(all_finals[src])
                depth.append(0)
                answer.append(None)
                history.append([])
                finished.append(False)
                pruned.append(False)
                spent.append(0)
            return list(range(start, start + k))

        def extend(ids, k, probe: bool) -> tuple[list[str], list[int]]:
            """Advance branches by up to ``k`` intervals; return (revealed, finished ids)."""
            nonlocal total, probes_cost
            revealed: list[str] = []
            done: list[int] = []
            per_branch = not isinstance(k, int)
            if per_branch:
                if len(k) != len(ids):
                    raise ActionError(f"steps has {len(k)} entries for {len(ids)} branch ids")
                steps_of = iter(k)
            elif k < 1:
                raise ActionError(f"steps must be >= 1, got {k!r}")
            for i in ids:
                if per_branch:
                    k = next(steps_of)
                    if not isinstance(k, int) or k < 1:
                        raise ActionError(f"steps must be ints >= 1, got {k!r}")
                if i < 0 or finished[i] or pruned[i]:
                    raise ActionError(_inactive_message(i, finished, pruned))
                d = depth[i]
                pr = b_probes[i]
                n_probes = len(pr)
                if d + k <= n_probes:
                    cost = delta * k
                    depth[i] = d + k
                    spent[i] += cost
                    total += cost
                    if probe:
                        a = pr[d + k - 1]
                        answer[i] = a
                        history[i].append(a)
                        revealed.append(a)
                        probes_cost += probe_cost
                else:
                    cost = delta * (n_probes - d)
                    rest = b_total[i] - spent[i] - cost
                    if rest > 0:
                        cost += rest
                    depth[i] = n_probes + 1
                    spent[i] += cost
                    total += cost
                    a = b_final[i]
                    answer[i] = a
                    history[i].append(a)
                    revealed.append(a)
                    finished[i] = True
                    finals.append(a)
                    done.append(i)
            return revealed, done

        def handle(action) -> object:
            nonlocal total, probes_cost
            kind = type(action)
            if kind is Continue:
                ids = action.ids
                revealed, done = extend(ids, action.steps, action.probe)
                if trace is not None:
                    trace.append((CONTINUE, ids, revealed, done, total + probes_cost))
                return None
            if kind is Read:
                ids = open_branches(action.k)
                for i in ids:
                    cost = b_total[i]
                    a = b_final[i]
                    depth[i] = len(b_probes[i]) + 1
                    spent[i] = cost
                    total += cost
                    answer[i] = a
                    history[i].append(a)
                    finished[i] = True
                    finals.append(a)
                if trace is not None:
                    trace.append((READ, ids, [b_final[i] for i in ids], ids, total + probes_cost))
                return ids
            if kind is Branch:
                ids = open_branches(action.k)
                revealed, done = extend(ids, 1, action.probe)
                if trace is not None:
                    trace.append((BRANCH, ids, revealed, done, total + probes_cost))
                return ids
            if kind is Probe:
                revealed = []
                for i in action.ids:
                    if i < 0 or i >= len(depth):
                        raise ActionError(_inactive_message(i, finished, pruned))
                    if finished[i] or depth[i] == 0:
                        revealed.append(answer[i])
                        continue
                    a = b_probes[i][depth[i] - 1]
                    answer[i] = a
                    history[i].append(a)
                    revealed.append(a)
                    probes_cost += probe_cost
                if trace is not None:
                    trace.append((PROBE, action.ids, revealed, [], total + probes_cost))
                return None
            if kind is Prune:
                for i in action.ids:
                    if i < 0 or i >= len(depth):
                        raise ActionError(_inactive_message(i, finished, pruned))
                    pruned[i] = True
                if trace is not None:
                    trace.append((PRUNE, action.ids, [], [], total + probes_cost))
                return None
            if kind is Note:
                if trace is not None:
                    trace.append((NOTE, (), [str(action.text)], [], total + probes_cost))
                return None
            raise ActionError(
                f"controller yielded {action!r}; expected an action such as Branch, Continue, "
                "Probe, Prune, Read or Note (from autotts)"
            )

        result = EpisodeResult(question, seed, None, 0, 0, 0, 0, trace=trace)
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
                reply = handle(action)
                state.tokens = total + probes_cost
                state.probe_tokens = probes_cost
        except StopIteration as stop:
            value = stop.value
            if isinstance(value, Answer):
                result.reason = value.reason
                value = value.value
            if not isinstance(value, str):
                result.error = (
                    f"controller returned {type(value).__name__} {value!r}; it must return the "
                    "answer as a str (or Answer(value, reason))"
                )
            else:
                result.answer = value
        except (ActionError, ControllerFailure) as exc:
            result.error = str(exc)
        except (IndexError, TypeError) as exc:
            result.error = f"invalid action or controller bug: {type(exc).__name__}: {exc}"
        except Exception as exc:  # the controller's own code raised
            result.error = f"controller raised {type(exc).__name__}: {exc}"
        result.tokens = total + probes_cost
        result.probe_tokens = probes_cost
        result.opened = len(depth)
        result.steps = steps
        return result


def _inactive_message(i, finished, pruned) -> str:
    if not isinstance(i, int) or i < 0 or i >= len(finished):
        return f"branch id {i!r} was never opened ({len(finished)} branches are open)"
    status = "finished" if finished[i] else "pruned"
    return f"branch {i} is {status}; only active branches can be continued"
