"""The composable controller space searched by Optuna (see :mod:`autotts.discovery.composable`).

A point of the space is a complete ``run()`` parameter dict of the composable controller.
``CHOICES`` are the structural (categorical) decisions, ``RANGES`` the numeric knobs.
"""

from __future__ import annotations

from pathlib import Path

COMPOSABLE_PATH = Path(__file__).with_name("composable.py")

CHOICES: dict[str, tuple] = {
    "widen": ("stagnant", "eager", "never"),
    "prune": (True, False),
    "probe_votes": (0, 1),
    "final_votes": (1, 2, 3),
}

# name: (low, high, integer)
RANGES: dict[str, tuple[float, float, bool]] = {
    "n_init": (1, 16, True),
    "max_branches": (2, 64, True),
    "warm_up": (1, 12, True),
    "abandon_patience": (2, 16, True),
    "ema_window": (1, 10, True),
    "alpha": (0.2, 1.0, False),
    "conf_thresh": (0.6, 0.99, False),
    "slack": (0.0, 0.1, False),
    "burst_aligned": (1, 4, True),
    "widen_burst": (1, 8, True),
    "trend_thresh": (-0.02, 0.1, False),
    "min_complete": (1, 8, True),
    # policies beyond CMC (0 switches each off, see composable.NEUTRAL)
    "depth_decay": (0.0, 3.0, False),
    "margin_share": (0.0, 0.8, False),
    "hold_rounds": (0, 5, True),
    "quorum": (0, 10, True),
}


def suggest(trial, choices: dict[str, tuple] | None = None) -> dict:
    """Sample one point of the space from an Optuna trial (``choices`` fixes the structure)."""
    params: dict = {}
    for name, options in CHOICES.items():
        if choices and name in choices:
            params[name] = choices[name]
        else:
            params[name] = trial.suggest_categorical(name, list(options))
    for name, (low, high, integer) in RANGES.items():
        if integer:
            params[name] = trial.suggest_int(name, int(low), int(high))
        else:
            params[name] = round(trial.suggest_float(name, low, high), 4)
    return normalize(params)


def normalize(params: dict) -> dict:
    """Clamp a point into the space and make it consistent (``n_init <= max_branches``);
    knobs a point lacks (runs recorded before they existed) take their neutral values."""
    from .composable import NEUTRAL

    out = {**NEUTRAL, **params}
    for name, (low, high, integer) in RANGES.items():
        value = min(high, max(low, out[name]))
        out[name] = int(round(value)) if integer else round(float(value), 4)
    out["n_init"] = min(out["n_init"], out["max_branches"])
    return out


def cmc_point(beta: float) -> dict:
    """CMC at ``beta`` as a point of the space (used to warm-start the search)."""
    from .composable import ComposableController

    return normalize(ComposableController.schedule(beta))


def structure(params: dict) -> tuple:
    """The structural (categorical) part of a point, as a hashable key."""
    return tuple(params[name] for name in CHOICES)
