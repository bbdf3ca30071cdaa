"""Playing episodes, one after another, under a CPU-time limit per episode: the one loop
behind evaluation, the checker, the sandbox worker, collaboration scoring and live
validation (:func:`play_episodes`), and the sums they keep (:class:`Tally`)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .contract import Controller, ControllerFailure
from .engine import EpisodeResult
from .environment import Environment

EPISODE_TIME_LIMIT_S = 10.0


class EpisodeTimeout(ControllerFailure):
    """Raised inside a controller whose episode used more CPU time than allowed (the episode
    fails with this message; see :func:`timed_out`)."""


TIMEOUT_MESSAGE = "episode exceeded the CPU-time limit"
MAX_TIMEOUTS = 2  # timed-out episodes after which a configuration's unit of work stops


def timed_out(result: EpisodeResult) -> bool:
    """Whether an episode failed by running past its CPU-time limit."""
    return result.error is not None and result.error.startswith(TIMEOUT_MESSAGE)


class Watchdog:
    """Interrupts an episode that uses more than ``limit_s`` seconds of *CPU time* (main
    thread, POSIX only): a CPU-time timer (``ITIMER_PROF``) checks when the current episode
    started. CPU time, not wall-clock time, so a loaded machine never changes a result.
    ``limit_s=None``: no limit."""

    def __init__(self, limit_s: float | None):
        self.limit_s = limit_s
        self.started = time.process_time()
        self.enabled = limit_s is not None and hasattr(signal, "setitimer") and _is_main_thread()

    def __enter__(self) -> Watchdog:
        if self.enabled:
            self.previous = signal.signal(signal.SIGPROF, self._check)
            period = min(0.5, self.limit_s / 4)
            signal.setitimer(signal.ITIMER_PROF, period, period)
        return self

    def reset(self) -> None:
        """Mark the start of the next episode."""
        self.started = time.process_time()

    def _check(self, signum, frame) -> None:
        if time.process_time() - self.started > self.limit_s:
            self.started = time.process_time()
            raise EpisodeTimeout(
                f"{TIMEOUT_MESSAGE} of {self.limit_s:g} s (does run() loop forever?)"
            )

    def __exit__(self, *exc) -> None:
        if self.enabled:
            signal.setitimer(signal.ITIMER_PROF, 0, 0)
            signal.signal(signal.SIGPROF, self.previous)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def play_episodes(
    controller: Controller,
    episodes: Iterable[tuple[Environment, dict, int, int]],
    *,
    time_limit_s: float | None = EPISODE_TIME_LIMIT_S,
    record_trace: bool = True,
) -> Iterator[EpisodeResult]:
    """Play each ``(environment, params, question, seed)`` episode in turn and yield its
    result. Each episode may use ``time_limit_s`` seconds of CPU time (``None``: no limit,
    e.g. live episodes, which wait on an inference engine); one that runs over fails with
    a timeout error and the next one starts."""
    with Watchdog(time_limit_s) as watchdog:
        for env, params, question, seed in episodes:
            watchdog.reset()
            yield env.run_episode(controller, params, question, seed, record_trace=record_trace)


@dataclass
class Tally:
    """Sums over episodes of one environment: episodes, correct answers, tokens, priced cost,
    tokens per model, and errors (the first one kept, with its question and seed)."""

    episodes: int = 0
    correct: int = 0
    tokens: int = 0
    cost: float = 0.0
    model_tokens: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    first_error: str | None = None

    def add(self, env: Environment, result: EpisodeResult) -> bool:
        """Count one result; return whether its answer was correct."""
        self.episodes += 1
        self.tokens += result.tokens
        if result.cost is not None:
            self.cost += result.cost
        for model, n in (result.model_tokens or {}).items():
            self.model_tokens[model] = self.model_tokens.get(model, 0) + n
        if result.error is not None:
            self.errors += 1
            if self.first_error is None:
                self.first_error = f"question {result.question}, seed {result.seed}: {result.error}"
            return False
        correct = env.is_correct(result.question, result.answer)
        self.correct += correct
        return correct


__all__ = [
    "EPISODE_TIME_LIMIT_S",
    "EpisodeTimeout",
    "Tally",
    "Watchdog",
    "play_episodes",
]
