"""Vector replay: many episodes of one replay store stepped at once, as numpy arrays.

Gymnasium's ``VectorEnv`` is the model. One :class:`VectorReplay` holds a batch of episodes
(any (question, seed) pairs, repeated as often as wanted, e.g. once per point of a parameter
grid); its state is arrays with one row per episode and one column per branch slot, and every
action is an array with one row per episode, applied to all rows at once:

- :meth:`~VectorReplay.open` ``k``: open the next ``k[e]`` branches of episode ``e`` in its
  seed's order and generate their first interval (``Branch``);
- :meth:`~VectorReplay.extend` ``steps``: extend branch ``j`` of episode ``e`` by
  ``steps[e, j]`` intervals (0: leave it), revealing the probe at the end or, past the last
  probe, finishing the branch (``Continue``);
- :meth:`~VectorReplay.prune` ``mask`` (``Prune``).

Semantics and costs are exactly :class:`~autotts.envs.replay.ReplayEnvironment`'s (the same branch
order per seed, the same token charges, the same order in which finished answers enter the
pool), checked episode by episode by the parity tests. Answers are integer ids per question
(``NONE``: no answer revealed yet); the ids of the question's final answers come first, so the
pool's vote counts need only ``n_final_ids`` columns. Gold answers stay in :class:`VectorData`
and are used by :meth:`VectorData.correct` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.contract import ActionError
from .replay import ReplayEnvironment, branch_order

ORDER_SPAN = 1 << 24  # order keys of one extension are below this
NONE = -1  # no answer revealed (a branch opened but never extended)
ABSENT = 1 << 60  # pool order of an answer not in the pool


@dataclass(frozen=True)
class VectorData:
    """A replay store as arrays (built once per environment, shared by every batch).

    Branch ``b`` of question ``q`` is row ``q * n_branches + b`` of the per-branch arrays.
    """

    env_id: str
    n_branches: int
    delta: np.ndarray  # (Q,) tokens per interval
    probes: np.ndarray  # (Q*N, L) answer ids of the probes (NONE past a branch's end)
    lengths: np.ndarray  # (Q*N,) probes per branch
    totals: np.ndarray  # (Q*N,) tokens of the whole branch
    finals: np.ndarray  # (Q*N,) answer id of the final answer
    rest: np.ndarray  # (Q*N,) tokens a finishing extension charges beyond its full intervals
    n_final_ids: np.ndarray  # (Q,) final answers have ids below this
    err: np.ndarray  # (Q,) id of the probe answer "ERR" (which never votes), NONE if absent
    gold: np.ndarray  # (Q,) id of the gold answer, -2 when no branch ever states it
    answers: tuple[tuple[str, ...], ...]  # per question, the answer of each id

    @classmethod
    def from_env(cls, env: ReplayEnvironment) -> VectorData:
        questions = env.questions
        if env.width_only:
            raise ValueError(
                f"{env.env_id} is a width-only store (no probe answers): probe-based search "
                "needs them; fill them in with `autotts envs probe`"
            )
        n = max(len(q.tokens) for q in questions)
        if any(len(q.tokens) != n for q in questions):
            raise ValueError(
                f"{env.env_id}: vector replay needs the same branch count per question"
            )
        longest = max(max(map(len, q.probes)) for q in questions)
        probes = np.full((len(questions) * n, max(1, longest)), NONE, dtype=np.int16)
        finals = np.empty(len(questions) * n, dtype=np.int16)
        n_final_ids, err, gold, answers = [], [], [], []
        for qi, q in enumerate(questions):
            ids: dict[str, int] = {}
            for a in q.finals:
                ids.setdefault(a, len(ids))
            n_final_ids.append(len(ids))
            for row in q.probes:
                for a in row:
                    ids.setdefault(a, len(ids))
            for b, row in enumerate(q.probes):
                probes[qi * n + b, : len(row)] = [ids[a] for a in row]
                finals[qi * n + b] = ids[q.finals[b]]
            err.append(ids.get("ERR", NONE))
            gold.append(ids.get(env.gold(qi), -2))
            answers.append(tuple(ids))
        delta = np.array([q.delta for q in questions], dtype=np.int64)
        lengths = np.array([len(p) for q in questions for p in q.probes], dtype=np.int16)
        totals = np.array([t for q in questions for t in q.tokens], dtype=np.int64)
        return cls(
            env_id=env.env_id,
            n_branches=n,
            delta=delta,
            probes=probes,
            lengths=lengths,
            totals=totals,
            finals=finals,
            rest=np.maximum(totals - np.repeat(delta, n) * lengths, 0),
            n_final_ids=np.array(n_final_ids, dtype=np.int32),
            err=np.array(err, dtype=np.int16),
            gold=np.array(gold, dtype=np.int16),
            answers=tuple(answers),
        )

    @property
    def n_ids(self) -> int:
        """The most answer ids any question has."""
        return max(len(a) for a in self.answers)

    def texts(self, answers: np.ndarray) -> np.ndarray:
        """The answer strings (None for ``NONE``) of a (points, questions, seeds) id array."""
        return np.array(
            [
                [
                    [self.answers[q][a] if a >= 0 else None for a in row]
                    for q, row in enumerate(rows)
                ]
                for rows in answers
            ],  # fmt: skip
            dtype=object,
        )

    def correct(self, questions: np.ndarray, answers: np.ndarray) -> np.ndarray:
        """Whether each episode's answer id is its question's gold answer (exact match)."""
        return (answers == self.gold[questions]) & (answers != NONE)


def branch_rows(data: VectorData, questions: np.ndarray, seeds, width: int) -> np.ndarray:
    """(E, width) rows of ``data`` holding each episode's branches in its seed's order."""
    n = data.n_branches
    seeds = np.asarray(seeds, dtype=np.int64)
    orders = {s: branch_order(s, n)[:width] for s in np.unique(seeds).tolist()}
    slot = np.array([orders[s] for s in seeds.tolist()], dtype=np.int64)
    return slot.reshape(len(seeds), width) + (np.asarray(questions) * n)[:, None]


class VectorReplay:
    """A batch of replay episodes (see the module docstring). ``width`` caps the branches an
    episode may open (at most the store's branch count)."""

    def __init__(self, data: VectorData, questions, seeds, width: int | None = None) -> None:
        self.data = data
        self.question = np.asarray(questions, dtype=np.int64)
        n = data.n_branches
        self.width = w = n if width is None else min(n, width)
        e = len(self.question)
        self.slot = branch_rows(data, self.question, seeds, w)
        self.length = data.lengths[self.slot].astype(np.int16)
        self.delta = data.delta[self.question]
        self.rest = data.rest[self.slot]
        self.final = data.finals[self.slot]
        self.err = data.err[self.question]
        self.n_final_ids = int(data.n_final_ids[np.unique(self.question)].max()) if e else 1

        self.opened = np.zeros(e, dtype=np.int64)
        self.depth = np.zeros((e, w), dtype=np.int16)
        self.live = np.zeros((e, w), dtype=bool)
        self.done = np.zeros((e, w), dtype=bool)
        self.answer = np.full((e, w), NONE, dtype=np.int16)  # latest revealed answer
        self.tokens = np.zeros(e, dtype=np.int64)
        self.n_finished = np.zeros(e, dtype=np.int64)
        # the pool of final answers: count per answer id and order of first appearance
        self.pool_count = np.zeros((e, self.n_final_ids), dtype=np.int16)
        self.pool_first = np.full((e, self.n_final_ids), ABSENT, dtype=np.int64)
        self._clock = 0  # orders the extensions, so earlier ones enter the pool first

    def __len__(self) -> int:
        return len(self.question)

    def keep(self, rows: np.ndarray) -> None:
        """Keep only the episodes ``rows`` (e.g. those not yet answered), in that order."""
        for name in (
            "question", "slot", "length", "delta", "rest", "final", "err", "opened", "depth",
            "live", "done", "answer", "tokens", "n_finished", "pool_count", "pool_first",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name)[rows])

    def open(self, k: np.ndarray) -> None:
        """Open the next ``k[e]`` branches of each episode and generate their first interval
        (``Branch``: the new branches' first probes are revealed)."""
        k = np.asarray(k, dtype=np.int64)
        end = self.opened + k
        if (k < 0).any() or (end > self.width).any():
            e = int(np.flatnonzero((k < 0) | (end > self.width))[0])
            raise ActionError(
                f"episode {e}: cannot open {k[e]} more branches: {self.opened[e]} of "
                f"{self.width} already opened"
            )
        col = np.arange(self.width)
        new = (col >= self.opened[:, None]) & (col < end[:, None])
        self.live |= new
        self.opened = end
        self.extend(new.astype(np.int16))

    def extend(self, steps: np.ndarray, order: np.ndarray | None = None) -> None:
        """Extend each branch by ``steps[e, j]`` intervals (``Continue``). Among branches that
        finish in this call, those with the smaller ``order`` key enter the pool first (the
        position of the branch in the ``Continue``'s id list; default: branch index)."""
        moved = steps > 0
        if (moved & ~self.live).any():
            e, j = np.argwhere(moved & ~self.live)[0]
            raise ActionError(
                f"episode {e}: branch {j} is not alive (finished, pruned or unopened)"
            )
        target = self.depth + steps
        ending = moved & (target > self.length)
        going = moved & ~ending
        e, j = np.nonzero(going)
        d = target[e, j]
        self.answer[e, j] = self.data.probes[self.slot[e, j], d - 1]
        self.depth[e, j] = d
        spent = (steps * going).sum(axis=1, dtype=np.int64) * self.delta
        if ending.any():
            e, j = np.nonzero(ending)
            spent += np.bincount(
                e,
                weights=(self.length[e, j] - self.depth[e, j]) * self.delta[e] + self.rest[e, j],
                minlength=len(self),
            ).astype(np.int64)
            self._finish(e, j, order)
        self.tokens += spent

    def _finish(self, e, j, order) -> None:
        self.depth[e, j] = self.length[e, j] + 1
        answer = self.final[e, j]
        self.answer[e, j] = answer
        self.done[e, j] = True
        self.live[e, j] = False
        self.n_finished += np.bincount(e, minlength=len(self))
        np.add.at(self.pool_count, (e, answer), 1)
        rank = j if order is None else order[e, j]
        key = self._clock * ORDER_SPAN + rank.astype(np.int64)
        np.minimum.at(self.pool_first, (e, answer), key)
        self._clock += 1

    def prune(self, mask: np.ndarray) -> None:
        """Abandon the branches in ``mask`` (``Prune``)."""
        self.live &= ~mask
