"""A replay store as arrays, for the compiled policy (:mod:`autotts.discovery.compiled`) that
plays many episodes at once: :class:`VectorData` (built once per store) and
:func:`branch_rows` (each episode's branch order, per seed).

Semantics and costs are exactly :class:`~autotts.envs.replay.ReplayEnvironment`'s (the same
branch order per seed, the same token charges, the same order in which finished answers enter
the pool), checked episode by episode by the parity tests. Answers are integer ids per
question (``NONE``: no answer revealed yet); the ids of the question's final answers come
first, so the pool's vote counts need only ``n_final_ids`` columns. Gold answers stay in
:class:`VectorData` and are used by :meth:`VectorData.correct` only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .replay import ReplayEnvironment, branch_order

NONE = -1  # no answer revealed (a branch opened but never extended)


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
