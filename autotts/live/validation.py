"""Validate a controller live: ``autotts validate``.

Runs the controller against the live backend on a set of questions and, where a replay store
of the same model holds the same questions, next to its replay prediction (100 seeds), so the
loop build-env → discover → validate closes on numbers that can be compared.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..core.contract import Controller, ControllerFailure
from ..core.episodes import Tally, play_episodes
from ..envs.replay import ReplayEnvironment
from ..envs.stores import StoreError, list_environments
from ..loading.run_configs import RunConfig
from ..results.stats import CONFIDENCE, Estimate, estimate, paired_by_question, superiority
from ..results.traces import episode_record
from ..sandbox.runner import run_sandboxed
from ..sandbox.sandboxed_controller import SandboxedController
from .backend import BackendError, GenerationBackend
from .live_environment import LiveEnvironment, LiveQuestion
from .lockstep import LockstepBackend, play_in_lockstep
from .settings import LiveSettings

REPLAY_SEEDS = 100
# below this many questions a percentile bootstrap's interval is too narrow to rest a verdict
# on (with 5 questions × 1 seed, live and replay alike, it finds a difference 18 % of the time)
MIN_VERDICT_QUESTIONS = 20


def validate_live(
    backend: GenerationBackend,
    questions: Sequence[LiveQuestion],
    controller: Controller,
    params: dict,
    settings: LiveSettings,
    seeds: int = 1,
    max_branches: int = 64,
    replay_env: str | None = None,
    env_dir: str | Path | None = None,
    aliases: Sequence[str] = (),
    others: Mapping[str, GenerationBackend] | None = None,
    episodes_in_flight: int = 1,
) -> dict:
    """Live accuracy, tokens (branch tokens, comparable with replay's; ``probe_tokens``, the
    probes' decodes, apart), latency and throughput; the replay prediction when a store of
    the model holds these questions (``replay_env``, or found by model name); the traces.
    ``episodes_in_flight > 1`` plays that many episodes at once, their steps merged into
    shared engine batches (:mod:`autotts.live.lockstep`; one served model only)."""
    lockstep = None
    if episodes_in_flight > 1:
        if others:
            raise BackendError(
                "episodes in flight share one engine's batches: run them with one served "
                "model (no further models), or one episode at a time"
            )
        lockstep = LockstepBackend(backend)
    env = LiveEnvironment(
        lockstep or backend, questions, settings, max_branches=max_branches, aliases=aliases,
        others=others,
    )  # fmt: skip
    config = RunConfig(controller.name or "controller", label=controller.name)
    tally = Tally()
    traces = []
    start = time.perf_counter()
    episodes = ((env, params, q, seed) for q in range(len(questions)) for seed in range(seeds))
    probe_tokens = 0
    if lockstep is not None:
        played = play_in_lockstep(lockstep, controller, episodes, episodes_in_flight)
    else:
        played = play_episodes(controller, episodes, time_limit_s=None)
    outcomes = np.zeros((len(questions), seeds))
    for result in played:
        outcomes[result.question, result.seed] = tally.add(env, result)
        probe_tokens += result.probe_tokens
        traces.append(episode_record(env, config, params, result))
    correct, tokens, errors, first_error = (
        tally.correct,
        tally.tokens,
        tally.errors,
        tally.first_error,
    )
    seconds = time.perf_counter() - start
    episodes = len(questions) * seeds
    live_accuracy = _percent(estimate([outcomes]))
    prediction = _predict(controller, params, questions, backend.model, replay_env, env_dir)
    stats = [b.stats for b in env.served]
    batches = [n for s in stats for n in s.batch_sizes]
    shown = params  # a sandboxed controller's run() parameters are computed in its sandbox
    if isinstance(controller, SandboxedController) and controller.last_params is not None:
        shown = controller.last_params
    report = {
        "controller": controller.name,
        "params": shown,
        "model": backend.model,
        "backend": backend.name,
        "models": {name: b.model for name, b in env.backends.items()},
        "settings": settings.model_dump(),
        "sampling": backend.effective_sampling(
            settings.sampling
        ),  # the model's defaults + overrides
        "live": {
            "accuracy": 100.0 * correct / episodes,
            "interval": live_accuracy,  # over questions and seeds
            # branch tokens, like replay's (whose probes are free); probe decodes apart
            "tokens": (tokens - probe_tokens) / episodes,
            "probe_tokens": probe_tokens / episodes,
            "episodes": episodes,
            "errors": errors,
            "first_error": first_error,
            "seconds_per_episode": seconds / episodes,
            "tokens_per_s": sum(s.generated_tokens for s in stats) / seconds if seconds else 0.0,
            "engine_calls": sum(s.calls for s in stats),
            "mean_batch": sum(batches) / len(batches) if batches else 0.0,
            "cached_prompt_tokens": sum(s.cached_prompt_tokens for s in stats),
        },
        "replay": prediction and prediction[0],
        "comparison": prediction and _comparison(outcomes, *prediction[1:]),
        "traces": traces,
    }
    return report


def replay_prediction(
    controller: Controller,
    params: dict,
    questions: Sequence[LiveQuestion],
    model: str,
    replay_env: str | None,
    env_dir: str | Path | None,
) -> dict | None:
    """The controller's replay accuracy (with its interval over questions and seeds) and
    tokens on the questions a store shares with ``questions`` (matched by text), or None when
    no store of the model has them."""
    prediction = _predict(controller, params, questions, model, replay_env, env_dir)
    return prediction and prediction[0]


def _predict(controller, params, questions, model, replay_env, env_dir):
    """``(replay_prediction's dict, live indices of the matched questions, their replay
    outcomes (matched questions × REPLAY_SEEDS))``, or None."""
    candidates = [replay_env] if replay_env else _stores_of(model, env_dir)
    best = None
    for env_id in candidates:
        try:
            env = ReplayEnvironment.load(env_id, env_dir)
        except StoreError:
            if replay_env:
                raise
            continue
        index = {q.text: i for i, q in enumerate(env.questions)}
        first: dict[int, int] = {}  # store question → its first live index (each once)
        for i, q in enumerate(questions):
            if q.question in index:
                first.setdefault(index[q.question], i)
        if first and (best is None or len(first) > len(best[1])):
            best = (env, first)
    if best is None:
        return None
    env, first = best
    matched, live = list(first), list(first.values())
    row = {q: n for n, q in enumerate(matched)}
    outcomes = np.zeros((len(matched), REPLAY_SEEDS))
    tally = Tally()  # errors: e.g. a graph with live-only roles
    for result in _replayed(controller, params, env, matched):
        outcomes[row[result.question], result.seed] = tally.add(env, result)
    n = tally.episodes
    return (
        {
            "env": env.env_id,
            "matched": len(matched),
            "accuracy": 100.0 * tally.correct / n,
            "interval": _percent(estimate([outcomes])),
            "tokens": tally.tokens / n,
            "episodes": n,
            "errors": tally.errors,
            "first_error": tally.first_error,
        },
        live,
        outcomes,
    )


def _percent(value: Estimate) -> dict:
    return {
        "se": 100 * value.se, "low": 100 * value.low, "high": 100 * value.high,
        "confidence": CONFIDENCE,
    }  # fmt: skip


def _comparison(live_outcomes: np.ndarray, live: list[int], replay_outcomes: np.ndarray) -> dict:
    """Live minus replay accuracy on the matched questions, with its interval (questions
    resampled together, each side's seeds apart) and the verdict it supports: none on fewer
    than ``MIN_VERDICT_QUESTIONS`` questions, where the bootstrap interval is too narrow."""
    mine = live_outcomes[live]
    verdict = superiority(paired_by_question(mine, replay_outcomes))
    difference = verdict.difference
    kind = {"beats": "live above replay", "worse": "live below replay"}.get(
        verdict.kind, verdict.kind
    )
    if len(live) < MIN_VERDICT_QUESTIONS:
        kind = f"no verdict on fewer than {MIN_VERDICT_QUESTIONS} matched questions"
    return {
        "questions": len(live),
        "live_accuracy": 100 * float(mine.mean()),
        "replay_accuracy": 100 * float(replay_outcomes.mean()),
        "difference": 100 * difference.mean,
        **_percent(difference),
        "verdict": kind,
    }


def _replayed(controller, params: dict, env: ReplayEnvironment, matched: list[int]):
    """The replay episodes of the ``matched`` questions, ``REPLAY_SEEDS`` seeds each (question
    indices of ``env``); a sandboxed controller's all in one sandboxed evaluation."""
    if not isinstance(controller, SandboxedController):
        episodes = ((env, params, q, seed) for q in matched for seed in range(REPLAY_SEEDS))
        yield from play_episodes(controller, episodes, record_trace=False)
        return
    subset = ReplayEnvironment.without_gold(env.env_id, [env.questions[q] for q in matched])
    outcome = run_sandboxed(
        controller.source, {env.env_id: subset}, [(params["beta"], params["overrides"])],
        REPLAY_SEEDS, trace_seeds=0, class_name=controller.class_name, isolate=controller.isolate,
    )  # fmt: skip
    if not outcome.ok:
        raise ControllerFailure(f"{controller.name}: rejected on replay: {outcome.reason}")
    for _, _, question, result in outcome.results:
        result.question = matched[question]
        yield result


def _stores_of(model: str, env_dir) -> list[str]:
    name = Path(model.rstrip("/")).name.lower()
    try:
        infos = list_environments(env_dir)
    except StoreError:
        return []
    return [info.env_id for info in infos if info.env_id.split("/")[0].lower() == name]
