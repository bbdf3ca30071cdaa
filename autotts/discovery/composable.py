"""Composable controller — the searchable family of the Optuna path (a superset of CMC).

Five independent policies, each a knob of ``run``:

- **width**: open ``n_init`` branches, widen by ``widen_burst`` up to ``max_branches``;
  ``widen="stagnant"`` widens when confidence is below threshold and not rising (CMC),
  ``"eager"`` whenever it is below threshold, ``"never"`` keeps the initial width;
- **depth**: extend every alive branch each round, most-extended first; branches agreeing with
  the leader get ``burst_aligned`` intervals;
- **pruning**: with ``prune``, abandon a branch that disagreed with the leader for
  ``abandon_patience`` rounds, never leaving fewer than two alive;
- **stopping**: an EMA (``alpha``, window ``ema_window``) of the vote confidence; stop when it
  reaches ``conf_thresh`` with trend ≥ ``-slack`` and at least ``min_complete`` finished;
- **aggregation**: votes are ``final_votes`` per finished branch plus ``probe_votes`` per alive
  branch's latest probe answer (``ERR`` probes never vote); the answer is the vote leader.
  With ``depth_decay`` γ > 0 the *answer* is the leader of a length-weighted vote instead:
  each finished branch votes ``final_votes · exp(−γ · depth / 32)`` (shorter reasoning that
  finished is right more often); stopping still reads the unweighted vote;
- **low-margin protection**: stop only when the leader's lead over the runner-up is at least
  ``margin_share`` of all votes, and the leader has led for ``hold_rounds`` consecutive rounds
  (a thin plurality, or one that just flipped, waits for more branches);
- **quorum** (short-m@k): with ``quorum`` m > 0, answer as soon as m finished branches agree.

With ``probe_votes=0, final_votes=1, widen="stagnant", prune=True`` and the neutral values
``NEUTRAL`` of the last three policies this is exactly CMC (``controllers/baselines/cmc.py``
is this policy with CMC's own schedule).

This file is the policy's one specification; :mod:`.compiled` is its only other form (numba,
for scoring in bulk), held equal episode by episode by the parity tests. A family is a
subclass that sets three class attributes: the schedule is piecewise linear in β through
``KNOTS`` (integers rounded), with ``FIXED`` choices; from each β of ``SWITCHES`` on, its
choices replace ``FIXED``'s (a family whose structure changes along the budget). That is what
``autotts export`` writes (:func:`autotts.discovery.family.family_source`).
"""

from collections import Counter
from math import exp

from autotts import Answer, Branch, Continue, Controller, Prune, beta_confidence, top_two

# The policies CMC does not have, at the values that switch them off.
NEUTRAL = {"depth_decay": 0.0, "margin_share": 0.0, "hold_rounds": 0, "quorum": 0}
DECAY_SCALE = 32.0  # depth intervals per e-fold of a vote at depth_decay = 1

INTEGER = {
    "hold_rounds",
    "quorum",
    "n_init",
    "max_branches",
    "warm_up",
    "abandon_patience",
    "ema_window",
    "burst_aligned",
    "widen_burst",
    "min_complete",
}
MAX_ROUNDS = 500


def interpolate(knots, beta):
    """Piecewise-linear value of ``knots`` ((beta, value) pairs, sorted) at ``beta``."""
    if beta <= knots[0][0]:
        return knots[0][1]
    for (b0, v0), (b1, v1) in zip(knots, knots[1:], strict=False):
        if beta <= b1:
            return v0 + (v1 - v0) * (beta - b0) / (b1 - b0)
    return knots[-1][1]


class ComposableController(Controller):
    """The composable policy: width, depth, pruning, stopping and aggregation rules, each
    switched and tuned by a ``run`` parameter (the module docstring describes them); its
    default schedule is CMC's. A family subclasses it and sets ``FIXED`` (structural
    choices), ``KNOTS`` (each numeric knob's ``(β, value)`` points, linear in between,
    integers rounded) and ``SWITCHES`` (``(β, choices)`` pairs that replace ``FIXED``'s
    choices from that β on); :meth:`schedule` reads them."""

    name = "composable"
    description = "width / depth / prune / EMA stop / weighted vote, piecewise-linear in beta"
    FIXED = {"widen": "stagnant", "prune": True, "probe_votes": 0, "final_votes": 1}
    KNOTS = {
        "n_init": [(0.0, 2), (1.0, 8)],
        "max_branches": [(0.0, 4), (1.0, 64)],
        "warm_up": [(0.0, 2), (1.0, 10)],
        "abandon_patience": [(0.0, 3), (1.0, 12)],
        "ema_window": [(0.0, 2), (1.0, 8)],
        "alpha": [(0.0, 0.7), (1.0, 0.3)],
        "conf_thresh": [(0.0, 0.85), (1.0, 0.97)],
        "slack": [(0.0, 0.04), (1.0, 0.01)],
        "burst_aligned": [(0.0, 1), (1.0, 3)],
        "widen_burst": [(0.0, 1), (1.0, 4)],
        "trend_thresh": [(0.0, 0.04), (1.0, 0.01)],
        "min_complete": [(0.0, 2), (1.0, 5)],
    }
    SWITCHES: list = []

    @classmethod
    def schedule(cls, beta: float) -> dict:
        b = max(0.0, min(1.0, float(beta)))
        params = {**NEUTRAL, **cls.FIXED}
        for start, choices in cls.SWITCHES:
            if b >= start:
                params.update(choices)
        for key, knots in cls.KNOTS.items():
            value = interpolate(knots, b)
            params[key] = round(value) if key in INTEGER else round(value, 4)
        params["max_branches"] = max(1, min(64, params["max_branches"]))
        params["n_init"] = max(1, min(params["n_init"], params["max_branches"]))
        return params

    def run(
        self,
        state,
        n_init,
        max_branches,
        warm_up,
        abandon_patience,
        ema_window,
        alpha,
        conf_thresh,
        slack,
        burst_aligned,
        widen_burst,
        trend_thresh,
        min_complete,
        widen="stagnant",
        prune=True,
        probe_votes=0,
        final_votes=1,
        depth_decay=0.0,
        margin_share=0.0,
        hold_rounds=0,
        quorum=0,
    ):
        yield Branch(n_init)
        finished, latest, depth, pool = state.finished, state.answer, state.depth, state.finals
        abandoned = [False] * n_init
        disagree = [0] * n_init
        finals = Counter()
        counted = 0
        ema = 0.0
        window = []
        widen_from = max(1, warm_up // 2)
        alive = [i for i in range(n_init) if not finished[i]]

        margin = 0.0
        held, previous = 0, None

        def tally():
            """Leader and confidence of the weighted vote (finals, plus alive probes)."""
            nonlocal counted, margin
            for answer in pool[counted:]:
                finals[answer] += 1
            counted = len(pool)
            if probe_votes:
                votes = Counter({a: final_votes * c for a, c in finals.items()})
                for i in alive:
                    answer = latest[i]
                    if answer is not None and answer != "ERR":
                        votes[answer] += probe_votes
            elif final_votes != 1:
                votes = Counter({a: final_votes * c for a, c in finals.items()})
            else:
                votes = finals
            leader, top1, top2 = top_two(votes)
            total = sum(votes.values())
            margin = (top1 - top2) / total if total else 0.0
            return leader, (beta_confidence(top1, top2) if leader is not None else 0.0)

        def decayed(default):
            """The length-weighted vote's leader (``default`` when the decay is off)."""
            if not depth_decay or not counted:
                return default
            weight = dict.fromkeys(pool, 0.0)  # first-seen order breaks ties
            for i in range(len(abandoned)):
                if finished[i]:
                    weight[latest[i]] += final_votes * exp(-depth_decay * depth[i] / DECAY_SCALE)
            if probe_votes:
                for i in alive:
                    if latest[i] is not None and latest[i] != "ERR":
                        weight[latest[i]] = weight.get(latest[i], 0.0) + probe_votes
            return max(weight, key=weight.__getitem__)

        winner, conf = tally()
        for rnd in range(MAX_ROUNDS):
            ema = (1.0 - alpha) * ema + alpha * conf
            window.append(ema)
            if len(window) > ema_window:
                del window[0]
            warm = rnd >= warm_up
            if prune and warm and winner is not None:
                stale = []
                for i in alive:
                    if latest[i] != winner:
                        disagree[i] += 1
                        if disagree[i] >= abandon_patience:
                            stale.append(i)
                    else:
                        disagree[i] = 0
                worst = sorted(stale, key=disagree.__getitem__, reverse=True)[
                    : max(0, len(alive) - 2)
                ]
                if worst:
                    for i in worst:
                        abandoned[i] = True
                    yield Prune(worst)
                    alive = [i for i in alive if not abandoned[i]]

            order = sorted(alive, key=depth.__getitem__, reverse=True)
            if order:
                if warm and winner is not None and burst_aligned > 1:
                    yield Continue(
                        order, [burst_aligned if latest[i] == winner else 1 for i in order]
                    )
                else:
                    yield Continue(order)
            if len(pool) != counted:
                alive = [i for i in alive if not finished[i]]
            if probe_votes or len(pool) != counted:
                winner, conf = tally()
            ema = (1.0 - alpha) * ema + alpha * conf
            window[-1] = ema
            trend = window[-1] - window[0] if len(window) >= 2 else 0.0
            held = held + 1 if winner is not None and winner == previous else 0
            previous = winner
            if quorum and counted >= quorum:
                answer, votes = finals.most_common(1)[0]
                if votes >= quorum:
                    return Answer(answer, f"round {rnd}: {votes} finished branches agree")
            if (
                warm
                and counted >= min_complete
                and ema >= conf_thresh
                and trend >= -slack
                and margin >= margin_share
                and held >= hold_rounds
            ):
                return Answer(
                    decayed(winner),
                    f"round {rnd}: ema {ema:.4f} >= {conf_thresh}, trend {trend:+.4f}",
                )
            if not alive:
                break
            opened = len(abandoned)
            if (
                widen != "never"
                and opened < max_branches
                and (widen == "eager" or trend <= trend_thresh)
                and rnd >= widen_from
                and ema < conf_thresh
            ):
                k = min(widen_burst, max_branches - opened)
                new = yield Branch(k)
                abandoned.extend([False] * k)
                disagree.extend([0] * k)
                alive += [i for i in new if not finished[i]]
                if probe_votes or len(pool) != counted:
                    winner, conf = tally()

        if finals:
            majority = max(finals, key=finals.__getitem__)
            return Answer(decayed(majority), "all branches resolved: pool majority")
        if winner is not None:
            return Answer(winner, "no branch finished: probe vote")
        fallback = Counter(latest[i] for i in range(len(abandoned)) if not abandoned[i])
        return Answer(max(fallback, key=fallback.__getitem__), "empty pool: latest answers")
