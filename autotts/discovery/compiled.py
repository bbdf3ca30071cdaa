"""The composable policy compiled with numba: its one form besides the specification, for
scoring in bulk (:mod:`.scoring`).

:func:`play_batch` plays a batch of episodes of a store held as arrays
(:class:`~autotts.envs.replay_arrays.VectorData`; each episode with its own parameter point)
in one compiled loop; it is the per-episode policy of
:mod:`autotts.discovery.composable` transliterated statement by statement, with the replay
environment's ``Branch``/``Continue``/``Prune`` inlined. Floating-point work is the same
operations in the same order (numba keeps IEEE semantics without ``fastmath``); the
length-weighted votes and the vote confidences are tables computed in Python. The parity tests
compare it with the per-episode engine.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .composable import MAX_ROUNDS
from .search_space import CHOICES

# columns of the integer and float parameter tables
INT_KNOBS = (
    "n_init", "max_branches", "warm_up", "abandon_patience", "ema_window", "burst_aligned",
    "widen_burst", "min_complete", "hold_rounds", "quorum", "widen", "prune", "probe_votes",
    "final_votes", "decay",
)  # fmt: skip
FLOAT_KNOBS = ("alpha", "conf_thresh", "slack", "trend_thresh", "margin_share")
EAGER, NEVER = (CHOICES["widen"].index(name) for name in ("eager", "never"))  # as in WIDEN


@njit(cache=True)
def _extend(i, n, s, depth, live, done, latest, pool, npool, probes, length, rest, final, delta):
    """Extend branch ``i`` (data row ``s``) by ``n`` intervals; returns (tokens, pool size)."""
    d = depth[i] + n
    if d <= length[s]:
        depth[i] = d
        latest[i] = probes[s, d - 1]
        return n * delta, npool
    cost = (length[s] - depth[i]) * delta + rest[s]
    depth[i] = length[s] + 1
    latest[i] = final[s]
    done[i] = True
    live[i] = False
    pool[npool] = final[s]
    return cost, npool + 1


@njit(cache=True)
def _open(k, opened, slot, depth, live, done, latest, pool, npool, probes, length, rest, final,
          delta):  # fmt: skip
    """``Branch(k)``: open the next ``k`` branches and extend each by one interval; returns
    (tokens, pool size)."""
    for i in range(opened, opened + k):
        live[i] = True
    tokens = 0
    for i in range(opened, opened + k):
        c, npool = _extend(i, 1, slot[i], depth, live, done, latest, pool, npool, probes,
                           length, rest, final, delta)  # fmt: skip
        tokens += c
    return tokens, npool


@njit(cache=True)
def _pool_leader(counts, nuniq):
    """The slot of the pool answer counted most, the first seen among equals."""
    best = 0
    for k in range(1, nuniq):
        if counts[k] > counts[best]:
            best = k
    return best


@njit(cache=True)
def _add_probe_votes(cand, values, pos, ncand, pv, latest, live, opened, err):
    """Add ``pv`` to ``values`` for each alive branch's latest probe answer (``ERR`` and none
    excepted), appending answers not yet candidates in branch order; returns the new count."""
    if pv > 0:
        for i in range(opened):
            a = latest[i]
            if live[i] and a >= 0 and a != err:
                if pos[a] < 0:
                    pos[a] = ncand
                    cand[ncand] = a
                    values[ncand] = 0
                    ncand += 1
                values[pos[a]] += pv
    return ncand


@njit(cache=True)
def _tally(pool, npool, counted, uniq, counts, nuniq, pos, cand, votes, fv, pv, latest, live,
           opened, err, conf_table):  # fmt: skip
    """The controller's ``tally``: count the pool answers not yet counted (``uniq`` holds them
    in first-seen order, ``pos`` maps an answer id to its slot), add the alive branches'
    probe votes, and return (leader, confidence, margin, nuniq); -1 is no leader."""
    for k in range(counted, npool):
        a = pool[k]
        if pos[a] < 0:
            pos[a] = nuniq
            uniq[nuniq] = a
            nuniq += 1
        counts[pos[a]] += 1
    for k in range(nuniq):
        cand[k] = uniq[k]
        votes[k] = fv * counts[k]
    ncand = _add_probe_votes(cand, votes, pos, nuniq, pv, latest, live, opened, err)
    leader, top1, top2, total = -1, 0, 0, 0
    for k in range(ncand):  # the first of the most voted leads (Counter order)
        v = votes[k]
        total += v
        if leader < 0 or v > top1:
            if leader >= 0:
                top2 = top1
            leader, top1 = cand[k], v
        elif v > top2:
            top2 = v
    for k in range(nuniq, ncand):
        pos[cand[k]] = -1
    margin = (top1 - top2) / total if total else 0.0
    return leader, conf_table[top1, top2] if leader >= 0 else 0.0, margin, nuniq


@njit(cache=True)
def _episode(slot, ip, fp, wtable, conf_table, probes, length, rest, final, delta, err, n_ids):
    n_init, max_b, warm_up, patience, ema_window = ip[0], ip[1], ip[2], ip[3], ip[4]
    burst, widen_burst, min_complete, hold_rounds, quorum = ip[5], ip[6], ip[7], ip[8], ip[9]
    widen, prune, pv, fv, decay = ip[10], ip[11], ip[12], ip[13], ip[14]
    alpha, conf_thresh, slack, trend_thresh, margin_share = fp[0], fp[1], fp[2], fp[3], fp[4]
    w = len(slot)
    depth = np.zeros(w, np.int64)
    live = np.zeros(w, np.bool_)
    done = np.zeros(w, np.bool_)
    latest = np.full(w, -1, np.int64)
    disagree = np.zeros(w, np.int64)
    pool = np.zeros(w, np.int64)
    uniq = np.zeros(w, np.int64)  # pool answers in first-seen order, with their counts
    counts = np.zeros(w, np.int64)
    cand = np.zeros(2 * w, np.int64)
    votes = np.zeros(2 * w, np.int64)
    weight = np.zeros(2 * w)
    pos = np.full(n_ids, -1, np.int64)
    hist = np.zeros(MAX_ROUNDS)
    order = np.zeros(w, np.int64)
    steps = np.zeros(w, np.int64)
    stale = np.zeros(w, np.int64)
    tokens, npool, counted, nuniq, opened = 0, 0, 0, 0, 0

    tokens, npool = _open(n_init, 0, slot, depth, live, done, latest, pool, npool, probes,
                          length, rest, final, delta)  # fmt: skip
    opened = n_init
    ema, margin, held, previous = 0.0, 0.0, 0, -1
    winner, conf = -1, 0.0
    for rnd in range(-1, MAX_ROUNDS):
        if rnd >= 0:
            ema = (1.0 - alpha) * ema + alpha * conf
            hist[rnd] = ema
            warm = rnd >= warm_up
            nalive = 0
            for i in range(opened):
                nalive += live[i]
            if prune and warm and winner >= 0:
                nstale = 0
                for i in range(opened):
                    if live[i]:
                        if latest[i] != winner:
                            disagree[i] += 1
                            if disagree[i] >= patience:
                                stale[nstale] = i
                                nstale += 1
                        else:
                            disagree[i] = 0
                room = max(0, nalive - 2)
                for r in range(min(room, nstale)):  # stable sort by disagreement, descending
                    best = r
                    for k in range(r + 1, nstale):
                        if disagree[stale[k]] > disagree[stale[best]]:
                            best = k
                    chosen = stale[best]
                    for k in range(best, r, -1):
                        stale[k] = stale[k - 1]
                    stale[r] = chosen
                for r in range(min(room, nstale)):
                    live[stale[r]] = False
            norder = 0
            for i in range(opened):
                if live[i]:
                    k = norder
                    while k > 0 and depth[order[k - 1]] < depth[i]:
                        order[k] = order[k - 1]
                        k -= 1
                    order[k] = i
                    norder += 1
            boost = warm and winner >= 0 and burst > 1
            for k in range(norder):
                i = order[k]
                steps[k] = burst if boost and latest[i] == winner else 1
            for k in range(norder):
                i = order[k]
                c, npool = _extend(i, steps[k], slot[i], depth, live, done, latest, pool,
                                   npool, probes, length, rest, final, delta)  # fmt: skip
                tokens += c
        if pv > 0 or npool != counted:
            winner, conf, margin, nuniq = _tally(pool, npool, counted, uniq, counts, nuniq, pos,
                                                 cand, votes, fv, pv, latest, live, opened, err,
                                                 conf_table)  # fmt: skip
            counted = npool
        if rnd < 0:
            continue
        ema = (1.0 - alpha) * ema + alpha * conf
        hist[rnd] = ema
        start = max(0, rnd - ema_window + 1)
        trend = hist[rnd] - hist[start] if rnd - start + 1 >= 2 else 0.0
        held = held + 1 if winner >= 0 and winner == previous else 0
        previous = winner
        if quorum > 0 and counted >= quorum:
            best = _pool_leader(counts, nuniq)
            if counts[best] >= quorum:
                return uniq[best], tokens
        if (
            warm and counted >= min_complete and ema >= conf_thresh and trend >= -slack
            and margin >= margin_share and held >= hold_rounds
        ):  # fmt: skip
            return _decayed(winner, decay, wtable, fv, pv, depth, done, live, latest, opened, uniq,
                            nuniq, pos, cand, weight, err), tokens  # fmt: skip
        alive = False
        for i in range(opened):
            alive = alive or live[i]
        if not alive:
            break
        if (
            widen != NEVER and opened < max_b and (widen == EAGER or trend <= trend_thresh)
            and rnd >= max(1, warm_up // 2) and ema < conf_thresh
        ):  # fmt: skip
            k = min(widen_burst, max_b - opened)
            c, npool = _open(k, opened, slot, depth, live, done, latest, pool, npool, probes,
                             length, rest, final, delta)  # fmt: skip
            tokens += c
            opened += k
            if pv > 0 or npool != counted:
                winner, conf, margin, nuniq = _tally(pool, npool, counted, uniq, counts, nuniq,
                                                     pos, cand, votes, fv, pv, latest, live,
                                                     opened, err, conf_table)  # fmt: skip
                counted = npool
    if nuniq:
        majority = uniq[_pool_leader(counts, nuniq)]
        return _decayed(majority, decay, wtable, fv, pv, depth, done, live, latest, opened, uniq,
                        nuniq, pos, cand, weight, err), tokens  # fmt: skip
    if winner >= 0:
        return winner, tokens
    return _latest_majority(latest, live, done, opened), tokens


@njit(cache=True)
def _decayed(default, decay, wtable, fv, pv, depth, done, live, latest, opened, uniq, nuniq, pos,
             cand, weight, err):  # fmt: skip
    """The length-weighted vote's leader (``default`` when the decay is off)."""
    if not decay or nuniq == 0:
        return default
    for k in range(nuniq):
        cand[k] = uniq[k]
        weight[k] = 0.0
    for i in range(opened):
        if done[i]:
            weight[pos[latest[i]]] += wtable[depth[i]]
    ncand = _add_probe_votes(cand, weight, pos, nuniq, pv, latest, live, opened, err)
    best = 0
    for k in range(1, ncand):
        if weight[k] > weight[best]:
            best = k
    for k in range(nuniq, ncand):
        pos[cand[k]] = -1
    return cand[best]


@njit(cache=True)
def _latest_majority(latest, live, done, opened):
    """The last resort: the most common latest answer of the branches not abandoned."""
    best, best_count = -1, 0
    for i in range(opened):
        if live[i] or done[i]:
            c = 0
            for k in range(opened):
                if (live[k] or done[k]) and latest[k] == latest[i]:
                    c += 1
            if c > best_count:
                best, best_count = latest[i], c
    return best


@njit(cache=True)
def play_batch(slots, questions, points, ints, floats, wtables, conf_table, probes, length,
               rest, final, delta, err, n_ids):  # fmt: skip
    """Answer id and tokens of every episode: episode ``e`` plays question ``questions[e]``
    with branch rows ``slots[e]`` and the parameters of point ``points[e]``."""
    n = len(questions)
    answers = np.empty(n, np.int64)
    tokens = np.empty(n, np.int64)
    for e in range(n):
        q, p = questions[e], points[e]
        answers[e], tokens[e] = _episode(
            slots[e], ints[p], floats[p], wtables[p], conf_table, probes, length, rest, final,
            delta[q], err[q], n_ids,
        )  # fmt: skip
    return answers, tokens
