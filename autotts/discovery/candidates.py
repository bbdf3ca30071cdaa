"""Judging one untrusted candidate: sandboxed β-sweep, scoring in the parent, β contract.

The parent loads the stores (with gold answers), sends the sandbox gold-free questions,
recomputes every episode from its action log and scores the answers itself. A candidate is
accepted when it loads, every episode ends without error, it is deterministic (on a random
sample replayed in a fresh process), and its cost never drops as β grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..envs.replay import ReplayEnvironment
from ..loading.run_configs import RunConfig
from ..results.stats import cost_drops, mean_over_envs
from ..results.traces import episode_record
from ..sandbox import SandboxLimits, run_sandboxed

MONOTONE_TOLERANCE = 0.02


@dataclass
class CandidateResult:
    """Outcome of one candidate: its curve over β, or why it was rejected."""

    ok: bool
    reason: str = ""
    curve: list[dict] = field(default_factory=list)  # per β: beta, accuracy, tokens, per_env
    traces: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    # per β: per-environment (questions, seeds) tables of accuracy (percent) and tokens, for
    # the verdict's intervals (kept in memory, never recorded)
    tables: list[tuple[list, list]] = field(default_factory=list, repr=False)

    @property
    def best(self) -> dict | None:
        return max(self.curve, key=lambda p: p["accuracy"]) if self.curve else None

    def summary(self) -> str:
        if not self.ok:
            return f"rejected: {self.reason}"
        return "; ".join(
            f"β={p['beta']:g}: {p['accuracy']:.2f}% @ {p['tokens'] / 1000:.1f}k" for p in self.curve
        )


def curve_cost_drops(curve: list[dict], tolerance: float = MONOTONE_TOLERANCE) -> list[str]:
    """Where a curve's mean tokens fall (beyond ``tolerance``) as β grows."""
    return cost_drops([p["beta"] for p in curve], [p["tokens"] for p in curve], tolerance)


def evaluate_candidate(
    source: str,
    envs: dict[str, ReplayEnvironment],
    betas: list[float],
    seeds: int,
    *,
    workers: int = 2,
    trace_seeds: int = 1,
    limits: SandboxLimits | None = None,
    isolate: bool = True,
) -> CandidateResult:
    """Sweep a candidate's β grid on ``envs`` inside the sandbox and score it here
    (``isolate=False``: without OS isolation, ``--unsafe-no-sandbox``)."""
    configs = [(beta, {}) for beta in betas]
    outcome = run_sandboxed(
        source,
        envs,
        configs,
        seeds,
        workers=workers,
        trace_seeds=trace_seeds,
        limits=limits,
        isolate=isolate,
    )
    if not outcome.ok:
        return CandidateResult(False, outcome.reason, seconds=outcome.seconds)
    failed = [(i, env_id, r) for i, env_id, _, r in outcome.results if r.error]
    if failed:
        i, env_id, r = failed[0]
        return CandidateResult(
            False,
            f"{len(failed)} episodes failed; first: {env_id} question {r.question} seed {r.seed} "
            f"β={betas[i]:g}: {r.error}",
            seconds=outcome.seconds,
        )
    correct: dict[tuple[int, str], int] = {}
    tokens: dict[tuple[int, str], int] = {}
    episodes: dict[tuple[int, str], int] = {}
    traces = []
    shape = {env_id: (len(env), seeds) for env_id, env in envs.items()}
    grids = {
        (i, env_id, kind): np.zeros(shape[env_id])
        for i in range(len(betas))
        for env_id in envs
        for kind in ("acc", "tok")
    }
    for index, env_id, question, result in outcome.results:
        key = (index, env_id)
        env = envs[env_id]
        right = env.is_correct(question, result.answer)
        grids[(index, env_id, "acc")][question, result.seed] = 100.0 * right
        grids[(index, env_id, "tok")][question, result.seed] = result.tokens
        correct[key] = correct.get(key, 0) + right
        tokens[key] = tokens.get(key, 0) + result.tokens
        episodes[key] = episodes.get(key, 0) + 1
        if result.actions is not None:  # replayed here from the worker's action log
            config = RunConfig("candidate", beta=betas[index])
            traces.append(episode_record(env, config, outcome.params[index], result))
    curve = []
    for index, beta in enumerate(betas):
        per_env = {
            env_id: [
                100.0 * correct[(index, env_id)] / episodes[(index, env_id)],
                tokens[(index, env_id)] / episodes[(index, env_id)],
            ]
            for env_id in envs
        }
        accuracy, tokens_mean = mean_over_envs(per_env.values())
        curve.append(
            {"beta": beta, "accuracy": accuracy, "tokens": tokens_mean, "per_env": per_env}
        )
    drops = curve_cost_drops(curve)
    if drops:
        return CandidateResult(
            False,
            "β contract: cost must not fall as β grows: " + "; ".join(drops),
            curve,
            traces,
            outcome.seconds,
        )
    tables = [
        ([grids[(i, e, "acc")] for e in envs], [grids[(i, e, "tok")] for e in envs])
        for i in range(len(betas))
    ]
    return CandidateResult(True, "", curve, traces, outcome.seconds, tables)
