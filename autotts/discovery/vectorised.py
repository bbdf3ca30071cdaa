"""The composable controller, vectorised: one numpy pass plays a whole parameter grid.

:func:`play` runs :mod:`autotts.discovery.composable`'s policy on every episode of a
:class:`~autotts.envs.replay_arrays.VectorReplay` at once, round by round in lockstep, each episode with
its own parameters (one array per knob). It is a second implementation of the same controller,
not an approximation: answers and tokens equal the per-episode engine's episode by episode
(ties broken in the same first-seen order, the same floating-point operations in the same
order; the parity tests check every shipped environment). :mod:`.scoring` evaluates lists of
points with it, or with its compiled twin :mod:`.compiled`.

The composable controller is our own code, not an untrusted candidate: it runs in-process.
"""

from __future__ import annotations

from math import exp

import numpy as np

from ..core.voting import beta_confidence_table
from ..envs.replay_arrays import ABSENT, NONE, VectorReplay
from .composable import DECAY_SCALE, MAX_ROUNDS
from .search_space import CHOICES, RANGES

WIDEN = {name: code for code, name in enumerate(CHOICES["widen"])}  # stagnant, eager, never
RING = int(RANGES["ema_window"][1])  # the longest EMA window of the space
PROBE_ORDER = 1 << 50  # answers only probes vote for come after every pool answer


def vote_weight(final_votes, depth_decay, depth: int) -> float:
    """A finished branch's length-weighted vote, the same float operations as the controller's
    ``final_votes * exp(-depth_decay * depth / DECAY_SCALE)``."""
    return final_votes * exp(-depth_decay * depth / DECAY_SCALE)


def knob_arrays(points: list[dict], index: np.ndarray) -> dict[str, np.ndarray]:
    """One array per knob, one value per episode (episode ``e`` plays ``points[index[e]]``)."""
    out = {}
    for name in points[0]:
        if name == "widen":
            values = np.array([WIDEN[p[name]] for p in points])
        else:
            values = np.array([p[name] for p in points])
        out[name] = values[index]
    return out


class _Votes:
    """The weighted vote of every episode: ``final_votes`` per pooled answer plus, with
    ``probe_votes``, per alive branch's latest probe (``ERR`` excepted). Keys order the
    answers as the controller's Counter does: pool order, then probe-only answers by branch."""

    def __init__(self, env: VectorReplay, p: dict, width: int):
        self.env, self.p, self.width = env, p, width
        self.with_probes = bool(p["probe_votes"].any())
        self.columns = int(env.data.n_final_ids.max()) if not self.with_probes else env.data.n_ids

    def count(self) -> tuple[np.ndarray, np.ndarray]:
        """``(votes, order)``: (E, A) weighted counts and first-seen keys (smaller first)."""
        env, p = self.env, self.p
        pool = env.pool_count.astype(np.int32)
        votes = pool * p["final_votes"][:, None].astype(np.int32)
        order = env.pool_first
        if not self.with_probes:
            return votes, order
        e_count, a_count = len(env), self.columns
        full = np.zeros((e_count, a_count), dtype=np.int32)
        full[:, : votes.shape[1]] = votes
        keys = np.full((e_count, a_count), ABSENT, dtype=np.int64)
        keys[:, : order.shape[1]] = np.where(env.pool_count > 0, order, ABSENT)
        answer = env.answer[:, : self.width]
        voting = env.live[:, : self.width] & (answer != NONE) & (answer != env.err[:, None])
        voting &= (p["probe_votes"] > 0)[:, None]
        e, j = np.nonzero(voting)
        a = answer[e, j]
        np.add.at(full, (e, a), p["probe_votes"][e].astype(np.int32))
        # a probe-only answer's key: the first alive branch holding it (j ascending)
        fresh = keys[e, a] == ABSENT
        np.minimum.at(keys, (e[fresh], a[fresh]), PROBE_ORDER + j[fresh].astype(np.int64))
        return full, keys


def _leader(votes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The answer with most votes, the first seen among equals; ``NONE`` when nobody voted."""
    top = votes.max(axis=1, keepdims=True)
    best = np.where(votes == top, order, ABSENT).argmin(axis=1)
    return np.where(top[:, 0] > 0, best, NONE)


def _tally(votes_of: _Votes, table: np.ndarray):
    """Leader, vote confidence and margin of every episode (the controller's ``tally``)."""
    votes, order = votes_of.count()
    leader = _leader(votes, order)
    rows = np.arange(len(leader))
    top1 = np.where(leader >= 0, votes[rows, np.maximum(leader, 0)], 0)
    rest = votes.copy()
    rest[rows, np.maximum(leader, 0)] = -1
    top2 = np.maximum(rest.max(axis=1), 0) if votes.shape[1] > 1 else np.zeros_like(top1)
    total = votes.sum(axis=1)
    conf = np.where(leader >= 0, table[top1, top2], 0.0)
    margin = np.divide(top1 - top2, total, out=np.zeros(len(total)), where=total > 0)
    return leader, conf, margin


def _decayed(env: VectorReplay, p: dict, rows: np.ndarray, default: np.ndarray, columns: int):
    """The length-weighted vote's leader of episodes ``rows`` (``default`` where it is off)."""
    gamma, final_votes = p["depth_decay"][rows], p["final_votes"][rows]
    use = (gamma > 0) & (env.n_finished[rows] > 0)
    out = default.copy()
    if not use.any():
        return out
    rows, sub = rows[use], np.flatnonzero(use)
    gamma, final_votes, width = gamma[use], final_votes[use], columns
    weight = np.zeros((len(rows), width))
    order = np.full((len(rows), width), ABSENT, dtype=np.int64)
    n_final = env.pool_first.shape[1]
    order[:, :n_final] = np.where(env.pool_count[rows] > 0, env.pool_first[rows], ABSENT)
    done, answer, depth = env.done[rows], env.answer[rows], env.depth[rows]
    at = np.arange(len(rows))
    for j in range(done.shape[1]):  # ascending branch order: the same sum order as Python
        fin = done[:, j]
        if fin.any():
            w = [
                vote_weight(fv, g, int(d))
                for fv, g, d in zip(final_votes[fin], gamma[fin], depth[fin, j], strict=True)
            ]
            weight[at[fin], answer[fin, j]] += w
    probe_votes = p["probe_votes"][rows]
    if probe_votes.any():
        for j in range(done.shape[1]):
            a = answer[:, j]
            on = env.live[rows, j] & (probe_votes > 0) & (a != NONE) & (a != env.err[rows])
            weight[at[on], a[on]] += probe_votes[on]
            fresh = on & (order[at, np.maximum(a, 0)] == ABSENT)
            order[at[fresh], a[fresh]] = PROBE_ORDER + j
    present = order != ABSENT
    best = np.where(present, weight, -np.inf)
    top = best.max(axis=1, keepdims=True)
    first = np.where(present & (best == top), order, ABSENT).argmin(axis=1)
    out[sub] = first
    return out


def play(env: VectorReplay, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Play the composable controller on every episode of ``env`` (episode ``e`` with the
    knobs ``p[name][e]``). Returns ``(answer ids, tokens)`` per episode, in ``env``'s order."""
    n = len(env)
    p = {name: np.asarray(v) for name, v in p.items()}
    rows = np.arange(n)  # the original index of each episode still playing
    final_answer = np.full(n, NONE, dtype=np.int64)
    final_tokens = np.zeros(n, dtype=np.int64)
    width = env.width
    table = beta_confidence_table(
        int((p["final_votes"].max() + p["probe_votes"].max()) * width) + 2
    )

    env.open(p["n_init"])
    disagree = np.zeros((n, width), dtype=np.int16)
    ema = np.zeros(n)
    ring = np.zeros((n, RING))
    held = np.zeros(n, dtype=np.int64)
    previous = np.full(n, NONE, dtype=np.int64)
    widen_from = np.maximum(1, p["warm_up"] // 2)
    votes_of = _Votes(env, p, width)
    winner, conf, margin = _tally(votes_of, table)
    col = np.arange(width)

    def settle(done_mask: np.ndarray, answers: np.ndarray) -> None:
        final_answer[rows[done_mask]] = answers[done_mask]
        final_tokens[rows[done_mask]] = env.tokens[done_mask]

    for rnd in range(MAX_ROUNDS):
        alpha = p["alpha"]
        ema = (1.0 - alpha) * ema + alpha * conf
        ring[:, rnd % RING] = ema
        warm = rnd >= p["warm_up"]
        live = env.live
        if p["prune"].any():
            acting = p["prune"] & warm & (winner >= 0)
            differs = live & (env.answer != winner[:, None]) & acting[:, None]
            agrees = live & (env.answer == winner[:, None]) & acting[:, None]
            disagree = np.where(differs, disagree + 1, np.where(agrees, 0, disagree))
            stale = differs & (disagree >= p["abandon_patience"][:, None])
            room = np.maximum(0, live.sum(axis=1) - 2)
            over = stale.sum(axis=1) > room
            if over.any():  # keep the longest-disagreeing, lowest index first among equals
                key = np.where(stale[over], disagree[over].astype(np.int64) * 256 - col, -(1 << 40))
                rank = np.argsort(np.argsort(-key, axis=1, kind="stable"), axis=1)
                stale[over] &= rank < room[over][:, None]
            env.prune(stale)
            live = env.live

        steps = live.astype(np.int16)
        burst = p["burst_aligned"]
        aligned = warm & (winner >= 0) & (burst > 1)
        if aligned.any():
            boost = aligned[:, None] & live & (env.answer == winner[:, None])
            steps = np.where(boost, burst[:, None].astype(np.int16), steps)
        # the Continue's id order: most extended first, lower index first among equals
        env.extend(steps, order=(255 - env.depth.astype(np.int32)) * 256 + col)

        winner, conf, margin = _tally(votes_of, table)
        ema = (1.0 - alpha) * ema + alpha * conf
        ring[:, rnd % RING] = ema
        length = np.minimum(rnd + 1, p["ema_window"])
        oldest = ring[np.arange(len(ema)), (rnd - length + 1) % RING]
        trend = np.where(length >= 2, ema - oldest, 0.0)
        held = np.where((winner >= 0) & (winner == previous), held + 1, 0)
        previous = winner
        counted = env.n_finished

        pool_leader = _leader(env.pool_count, env.pool_first)
        quorum = p["quorum"]
        top_pool = env.pool_count.max(axis=1) if env.pool_count.shape[1] else 0
        by_quorum = (quorum > 0) & (counted >= quorum) & (top_pool >= quorum)
        by_confidence = (
            ~by_quorum
            & warm
            & (counted >= p["min_complete"])
            & (ema >= p["conf_thresh"])
            & (trend >= -p["slack"])
            & (margin >= p["margin_share"])
            & (held >= p["hold_rounds"])
        )
        no_alive = ~by_quorum & ~by_confidence & ~env.live.any(axis=1)
        last = rnd == MAX_ROUNDS - 1
        ending = by_quorum | by_confidence | no_alive | last
        if ending.any():
            answers = np.full(len(ema), NONE, dtype=np.int64)
            answers[by_quorum] = pool_leader[by_quorum]
            idle = (no_alive | last) & ~by_quorum & ~by_confidence
            fallback = np.where(counted > 0, pool_leader, winner)
            base = np.where(by_confidence, winner, fallback)
            decide = np.flatnonzero((by_confidence | idle) & (base >= 0))
            answers[decide] = _decayed(env, p, decide, base[decide], votes_of.columns)
            leftover = np.flatnonzero(idle & (base < 0))
            answers[leftover] = [_latest_majority(env, e) for e in leftover]
            settle(ending, answers)
            keep = np.flatnonzero(~ending)
            if not len(keep):
                break
            env.keep(keep)
            rows, disagree, ema, ring = rows[keep], disagree[keep], ema[keep], ring[keep]
            held, previous, winner = held[keep], previous[keep], winner[keep]
            conf, margin, trend, widen_from = (
                conf[keep],
                margin[keep],
                trend[keep],
                widen_from[keep],
            )
            p = {name: v[keep] for name, v in p.items()}
            votes_of = _Votes(env, p, width)

        widen = p["widen"]
        opened, cap = env.opened, p["max_branches"]
        grow = (
            (widen != WIDEN["never"])
            & (opened < cap)
            & ((widen == WIDEN["eager"]) | (trend <= p["trend_thresh"]))
            & (rnd >= widen_from)
            & (ema < p["conf_thresh"])
        )
        finished = env.n_finished.copy()
        env.open(np.where(grow, np.minimum(p["widen_burst"], cap - opened), 0))
        if votes_of.with_probes or (env.n_finished != finished).any():
            winner, conf, margin = _tally(votes_of, table)
    return final_answer, final_tokens


def _latest_majority(env: VectorReplay, e: int) -> int:
    """The controller's last resort (no finished branch, no vote): the most common latest
    answer of the branches not abandoned, ``None`` included, first seen among equals."""
    counts: dict[int, int] = {}
    for j in range(int(env.opened[e])):
        if env.live[e, j] or env.done[e, j]:
            a = int(env.answer[e, j])
            counts[a] = counts.get(a, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else NONE
