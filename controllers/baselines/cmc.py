"""CMC — the Confidence Momentum Controller discovered by AutoTTS's agent.

Keeps an exponential moving average (EMA) of the vote confidence among *finished* branches and
stops only when it is high and not falling; widens (opens new branches) when confidence
stagnates; gives extra depth to branches agreeing with the current pool winner; abandons a
branch only after it disagreed for several rounds, always keeping at least two alive. Every
knob is a function of beta (reference-results.md, "CMC, precisely").
"""

from collections import Counter

from autotts import Answer, Branch, Continue, Controller, Prune, majority, vote_confidence

MAX_ROUNDS = 500


class ConfidenceMomentumController(Controller):
    name = "cmc"
    description = "EMA of finished-branch vote confidence; momentum stop, trend widening"

    @staticmethod
    def schedule(beta: float) -> dict:
        b = max(0.0, min(1.0, float(beta)))
        return {
            "n_init": max(2, round(2 + 6 * b)),
            "max_branches": min(64, round(4 + 60 * b)),
            "warm_up": max(2, round(2 + 8 * b)),
            "abandon_patience": max(3, round(3 + 9 * b)),
            "ema_window": max(2, round(2 + 6 * b)),
            "alpha": round(0.70 - 0.40 * b, 4),
            "conf_thresh": round(0.85 + 0.12 * b, 4),
            "slack": round(0.04 - 0.03 * b, 4),
            "burst_aligned": max(1, round(1 + 2 * b)),
            "widen_burst": max(1, round(1 + 3 * b)),
            "trend_thresh": round(0.04 - 0.03 * b, 4),
            "min_complete": max(2, round(2 + 3 * b)),
        }

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
    ):
        yield Branch(n_init)
        finished, latest, depth, pool = state.finished, state.answer, state.depth, state.finals
        abandoned = [False] * n_init
        disagree = [0] * n_init
        counts = Counter(pool)
        counted = len(pool)
        ema = 0.0
        window = []
        widen_from = max(1, warm_up // 2)
        alive = [i for i in range(n_init) if not finished[i]]  # neither finished nor abandoned
        winner, conf = vote_confidence(counts)

        for rnd in range(MAX_ROUNDS):
            ema = (1.0 - alpha) * ema + alpha * conf
            window.append(ema)
            if len(window) > ema_window:
                del window[0]
            warm = rnd >= warm_up
            if warm and winner is not None:
                stale = []
                for i in alive:
                    if latest[i] != winner:
                        disagree[i] += 1
                        if disagree[i] >= abandon_patience:
                            stale.append(i)
                    else:
                        disagree[i] = 0
                # most-disagreeing first (stable), never leaving fewer than two alive
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
                    steps = [burst_aligned if latest[i] == winner else 1 for i in order]
                    yield Continue(order, steps)
                else:
                    yield Continue(order)
            if len(pool) != counted:  # some branches finished
                alive = [i for i in alive if not finished[i]]
                for answer in pool[counted:]:
                    counts[answer] += 1
                counted = len(pool)
                winner, conf = vote_confidence(counts)
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
                opened < max_branches
                and trend <= trend_thresh
                and rnd >= widen_from
                and ema < conf_thresh
            ):
                k = min(widen_burst, max_branches - opened)
                new = yield Branch(k)
                abandoned.extend([False] * k)
                disagree.extend([0] * k)
                alive += [i for i in new if not finished[i]]
                if len(pool) != counted:
                    for answer in pool[counted:]:
                        counts[answer] += 1
                    counted = len(pool)
                    winner, conf = vote_confidence(counts)

        if pool:
            return Answer(majority(pool), "all branches resolved: pool majority")
        return Answer(
            majority(latest[i] for i in range(len(abandoned)) if not abandoned[i]),
            "empty pool: majority of latest answers",
        )
