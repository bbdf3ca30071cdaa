# Discovered by autotts (optuna path): β-family (Optuna + compression)
# run: `autotts discover` (Optuna path); its run directory was not kept
# search environments: Qwen3-0.6B/aime24, Qwen3-1.7B/aime24, Qwen3-4B/aime24, Qwen3-8B/aime24
# search set (means): β=0 55.17%@30k, β=0.1 61.12%@104k, β=0.2 61.23%@105k, β=0.3 61.23%@106k, β=0.4 61.72%@117k, β=0.5 62.85%@170k, β=0.6 63.42%@215k, β=0.7 63.68%@253k, β=0.8 63.92%@291k, β=0.9 64.45%@382k, β=1 65.03%@497k
# held-out (means): β=0 48.88%@33k, β=0.1 53.58%@119k, β=0.2 53.71%@121k, β=0.3 53.71%@121k, β=0.4 54.17%@134k, β=0.5 55.75%@198k, β=0.6 56.47%@252k, β=0.7 56.83%@300k, β=0.8 57.08%@346k, β=0.9 57.49%@459k, β=1 57.81%@607k
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

With ``probe_votes=0, final_votes=1, widen="stagnant", prune=True`` this is exactly CMC.
The schedule is piecewise linear in β through ``KNOTS`` (integers rounded), with ``FIXED``
choices; ``autotts export`` rewrites the block between the markers.
"""

from collections import Counter

from autotts import Answer, Branch, Continue, Controller, Prune, beta_confidence, top_two

# --- schedule (generated) ---
FIXED = {"widen": "stagnant", "prune": True, "probe_votes": 0, "final_votes": 1}
KNOTS = {
    "n_init": [
        (0.0, 2.0),
        (0.2537, 5.0),
        (0.3935, 5.6667),
        (0.5917, 8.5),
        (0.8455, 11.0),
        (1.0, 11.0),
    ],
    "max_branches": [
        (0.0, 10.25),
        (0.2537, 10.25),
        (0.3935, 10.25),
        (0.5917, 22.0),
        (0.8455, 34.0),
        (1.0, 64.0),
    ],
    "warm_up": [
        (0.0, 5.0),
        (0.2537, 7.0714),
        (0.3935, 7.0714),
        (0.5917, 7.0714),
        (0.8455, 7.0714),
        (1.0, 10.0),
    ],
    "abandon_patience": [
        (0.0, 4.25),
        (0.2537, 4.25),
        (0.3935, 4.6667),
        (0.5917, 12.5),
        (0.8455, 13.25),
        (1.0, 13.25),
    ],
    "ema_window": [
        (0.0, 4.0),
        (0.2537, 4.0),
        (0.3935, 4.0),
        (0.5917, 4.75),
        (0.8455, 4.75),
        (1.0, 8.0),
    ],
    "alpha": [
        (0.0, 0.8277),
        (0.2537, 0.8277),
        (0.3935, 0.3994),
        (0.5917, 0.3994),
        (0.8455, 0.3994),
        (1.0, 0.3),
    ],
    "conf_thresh": [
        (0.0, 0.6661),
        (0.2537, 0.7562),
        (0.3935, 0.7562),
        (0.5917, 0.7562),
        (0.8455, 0.8459),
        (1.0, 0.97),
    ],
    "slack": [
        (0.0, 0.028),
        (0.2537, 0.028),
        (0.3935, 0.028),
        (0.5917, 0.0489),
        (0.8455, 0.0489),
        (1.0, 0.0489),
    ],
    "burst_aligned": [
        (0.0, 2.0),
        (0.2537, 2.4286),
        (0.3935, 2.4286),
        (0.5917, 2.4286),
        (0.8455, 2.4286),
        (1.0, 3.0),
    ],
    "widen_burst": [
        (0.0, 2.0),
        (0.2537, 3.2308),
        (0.3935, 3.2308),
        (0.5917, 3.2308),
        (0.8455, 3.2308),
        (1.0, 4.0),
    ],
    "trend_thresh": [
        (0.0, -0.0001),
        (0.2537, 0.0114),
        (0.3935, 0.0206),
        (0.5917, 0.0206),
        (0.8455, 0.0206),
        (1.0, 0.0206),
    ],
    "min_complete": [
        (0.0, 2.5714),
        (0.2537, 2.5714),
        (0.3935, 2.5714),
        (0.5917, 3.0),
        (0.8455, 3.0),
        (1.0, 5.5),
    ],
}
# --- end schedule ---

INTEGER = {
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
        params = dict(FIXED)
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

        def tally():
            """Leader and confidence of the weighted vote (finals, plus alive probes)."""
            nonlocal counted
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
            return leader, (beta_confidence(top1, top2) if leader is not None else 0.0)

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
            if warm and counted >= min_complete and ema >= conf_thresh and trend >= -slack:
                return Answer(
                    winner, f"round {rnd}: ema {ema:.4f} >= {conf_thresh}, trend {trend:+.4f}"
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
            return Answer(
                max(finals, key=finals.__getitem__), "all branches resolved: pool majority"
            )
        if winner is not None:
            return Answer(winner, "no branch finished: probe vote")
        fallback = Counter(latest[i] for i in range(len(abandoned)) if not abandoned[i])
        return Answer(max(fallback, key=fallback.__getitem__), "empty pool: latest answers")
