"""CMC — the Confidence Momentum Controller discovered by AutoTTS's agent.

Keeps an exponential moving average (EMA) of the vote confidence among *finished* branches and
stops only when it is high and not falling; widens (opens new branches) when confidence
stagnates; gives extra depth to branches agreeing with the current pool winner; abandons a
branch only after it disagreed for several rounds, always keeping at least two alive. Every
knob is a function of beta (reference-results.md, "CMC, precisely").

CMC is a point of the composable policy (:class:`autotts.ComposableController`, whose other
policies default to off): the rules are written once, there; this file holds CMC's schedule.
"""

from autotts import ComposableController


class ConfidenceMomentumController(ComposableController):
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
