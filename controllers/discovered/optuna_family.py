# Discovered by autotts (optuna path): β-family (Optuna + racing)
# run: `autotts discover` (defaults: --target 0.30,0.55, 150 + 2×150 trials, raced on 100 fresh seeds; --seed 0); its run directory was not kept
# search environments: Qwen3-0.6B/aime24, Qwen3-1.7B/aime24, Qwen3-4B/aime24, Qwen3-8B/aime24
# search set (means): β=0 52.91%@23k, β=0.1 56.59%@40k, β=0.2 60.16%@73k, β=0.3 61.43%@97k, β=0.4 62.33%@126k, β=0.5 63.79%@205k, β=0.6 64.13%@251k, β=0.7 64.29%@277k, β=0.8 65.02%@410k, β=0.9 65.09%@465k, β=1 65.31%@490k
# held-out (means): β=0 47.57%@25k, β=0.1 50.31%@44k, β=0.2 53.16%@80k, β=0.3 54.98%@107k, β=0.4 54.81%@141k, β=0.5 56.77%@232k, β=0.6 56.99%@286k, β=0.7 57.40%@317k, β=0.8 57.82%@497k, β=0.9 57.78%@567k, β=1 57.98%@602k
# held-out environments: Qwen3-0.6B/aime25, Qwen3-1.7B/aime25, Qwen3-4B/aime25, Qwen3-8B/aime25
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
``NEUTRAL`` of the last three policies this is exactly CMC.
The schedule is piecewise linear in β through ``KNOTS`` (integers rounded), with ``FIXED``
choices; from each β of ``SWITCHES`` on, its choices replace ``FIXED``'s (a family whose
structure changes along the budget). ``autotts export`` rewrites the block between the
markers.
"""

from collections import Counter
from math import exp

from autotts import Answer, Branch, Continue, Controller, Prune, beta_confidence, top_two

# --- schedule (generated) ---
# fmt: off
FIXED = {"widen": "eager", "prune": False, "probe_votes": 1, "final_votes": 1}
KNOTS = {
    "n_init": [(0.0, 2), (0.1, 3), (0.2, 2), (0.3, 7), (0.4, 10), (0.5, 14), (0.6, 14), (0.7, 14), (0.8, 8), (0.9, 9), (1.0, 8)],
    "max_branches": [(0.0, 2), (0.1, 61), (0.2, 5), (0.3, 7), (0.4, 10), (0.5, 17), (0.6, 22), (0.7, 24), (0.8, 49), (0.9, 58), (1.0, 63)],
    "warm_up": [(0.0, 2), (0.1, 9), (0.2, 2), (0.3, 1), (0.4, 1), (0.5, 1), (0.6, 2), (0.7, 3), (0.8, 12), (0.9, 12), (1.0, 12)],
    "abandon_patience": [(0.0, 4), (0.1, 9), (0.2, 13), (0.3, 16), (0.4, 10), (0.5, 14), (0.6, 12), (0.7, 14), (0.8, 14), (0.9, 13), (1.0, 14)],
    "ema_window": [(0.0, 7), (0.1, 3), (0.2, 1), (0.3, 3), (0.4, 3), (0.5, 1), (0.6, 1), (0.7, 3), (0.8, 8), (0.9, 8), (1.0, 9)],
    "alpha": [(0.0, 0.4197), (0.1, 0.4035), (0.2, 0.2491), (0.3, 0.9416), (0.4, 0.6258), (0.5, 0.751), (0.6, 0.3735), (0.7, 0.6601), (0.8, 0.306), (0.9, 0.3198), (1.0, 0.4273)],
    "conf_thresh": [(0.0, 0.6306), (0.1, 0.6226), (0.2, 0.7151), (0.3, 0.8807), (0.4, 0.8203), (0.5, 0.7602), (0.6, 0.7256), (0.7, 0.7458), (0.8, 0.9155), (0.9, 0.961), (1.0, 0.9658)],
    "slack": [(0.0, 0.0247), (0.1, 0.0434), (0.2, 0.0749), (0.3, 0.0776), (0.4, 0.0013), (0.5, 0.0239), (0.6, 0.0176), (0.7, 0.0741), (0.8, 0.0121), (0.9, 0.0007), (1.0, 0.0078)],
    "burst_aligned": [(0.0, 3), (0.1, 2), (0.2, 3), (0.3, 2), (0.4, 4), (0.5, 1), (0.6, 3), (0.7, 1), (0.8, 2), (0.9, 2), (1.0, 2)],
    "widen_burst": [(0.0, 3), (0.1, 6), (0.2, 5), (0.3, 8), (0.4, 7), (0.5, 6), (0.6, 7), (0.7, 8), (0.8, 5), (0.9, 5), (1.0, 5)],
    "trend_thresh": [(0.0, 0.0979), (0.1, 0.0253), (0.2, 0.0443), (0.3, 0.0773), (0.4, 0.0766), (0.5, 0.0453), (0.6, 0.064), (0.7, 0.0312), (0.8, 0.0504), (0.9, 0.0013), (1.0, 0.0156)],
    "min_complete": [(0.0, 4), (0.1, 2), (0.2, 8), (0.3, 5), (0.4, 5), (0.5, 8), (0.6, 8), (0.7, 7), (0.8, 5), (0.9, 5), (1.0, 5)],
    "depth_decay": [(0.0, 2.2516), (0.1, 0.074), (0.2, 2.5674), (0.3, 1.0985), (0.4, 2.939), (0.5, 1.7291), (0.6, 2.2421), (0.7, 2.1573), (0.8, 0.0324), (0.9, 0.467), (1.0, 0.1172)],
    "margin_share": [(0.0, 0.4815), (0.1, 0.0538), (0.2, 0.7972), (0.3, 0.6543), (0.4, 0.7519), (0.5, 0.6426), (0.6, 0.7562), (0.7, 0.7906), (0.8, 0.0137), (0.9, 0.0032), (1.0, 0.0061)],
    "hold_rounds": [(0.0, 5), (0.1, 4), (0.2, 0), (0.3, 5), (0.4, 5), (0.5, 5), (0.6, 5), (0.7, 0), (0.8, 0), (0.9, 0), (1.0, 0)],
    "quorum": [(0.0, 1), (0.1, 4), (0.2, 9), (0.3, 6), (0.4, 10), (0.5, 7), (0.6, 9), (0.7, 10), (0.8, 0), (0.9, 0), (1.0, 0)],
}
SWITCHES = [(0.05, {"widen": "never", "prune": True, "final_votes": 2}), (0.15, {"widen": "eager", "probe_votes": 0, "final_votes": 3}), (0.25, {"widen": "stagnant", "final_votes": 1}), (0.35, {"widen": "eager"}), (0.65, {"final_votes": 2}), (0.75, {"widen": "stagnant", "final_votes": 1})]
# fmt: on
# --- end schedule ---

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


class DiscoveredController(Controller):
    name = "optuna-family"
    description = "width / depth / prune / EMA stop / weighted vote, piecewise-linear in beta"

    @staticmethod
    def schedule(beta: float) -> dict:
        b = max(0.0, min(1.0, float(beta)))
        params = {**NEUTRAL, **FIXED}
        for start, choices in SWITCHES:
            if b >= start:
                params.update(choices)
        for key, knots in KNOTS.items():
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
