"""The environment contract: :class:`Environment`, what every environment type implements
(replay, cross-model, live, user types), and :class:`EpisodeRunner`, the base of the
environments that play an episode from its ``episode_source`` on the shared engine
(:func:`autotts.core.engine.play`). :mod:`autotts.envs.registry` makes them from ids."""

from __future__ import annotations

from abc import ABC, abstractmethod

from .contract import Controller
from .engine import EpisodeResult, play


class Environment(ABC):
    """The contract every environment implements (replay, cross-model, live, user types).

    - ``env_id``: the id it was made from (tables, traces and plots use it);
    - ``len(env)``: the number of questions, addressed ``0 … len(env) - 1``;
    - ``run_episode(controller, params, question, seed, record_trace=True)``: play one
      episode and return an :class:`~autotts.core.engine.EpisodeResult`. The controller sees only
      the :class:`~autotts.core.contract.EpisodeState` the environment updates (never the gold
      answer, never unrevealed branch data); controller failures are returned in
      ``result.error``, never raised. The same ``(question, seed)`` gives the same episode.
    - ``gold(question)``, ``is_correct(question, answer)``: scoring, for the evaluator only;
    - ``unit``: what ``result.cost`` counts (``"tokens"`` where tokens are the cost);
    - ``signal_names``: the signals its episodes put in ``state.signals``
      (:mod:`autotts.core.signals`); controllers that ``require`` others are refused.
    """

    env_id: str
    unit: str = "tokens"
    signal_names: frozenset[str] = frozenset()

    @abstractmethod
    def __len__(self) -> int:
        """The number of questions."""

    @abstractmethod
    def run_episode(
        self,
        controller: Controller,
        params: dict,
        question: int,
        seed: int,
        record_trace: bool = True,
    ) -> EpisodeResult:
        """Play one episode (see the class docstring)."""

    @abstractmethod
    def gold(self, question: int) -> str:
        """The gold answer of ``question`` (scoring and reports only)."""

    def is_correct(self, question: int, answer: str | None) -> bool:
        """Exact string match with the gold answer (override for semantic equivalence)."""
        return answer is not None and answer == self.gold(question)


class EpisodeRunner(Environment):
    """What replay environments share: playing the episode ``episode_source`` describes
    (an episode engine class and its arguments), so an action log recorded elsewhere (a
    sandbox worker) rebuilds into the same trace."""

    max_steps: int

    def episode_source(self, question: int, seed: int) -> tuple:
        raise NotImplementedError

    def run_episode(
        self,
        controller: Controller,
        params: dict,
        question: int,
        seed: int,
        record_trace: bool = True,
    ) -> EpisodeResult:
        """Play one episode; controller failures are returned in ``EpisodeResult.error``."""
        source = self.episode_source(question, seed)
        result = EpisodeResult(question, seed, None, 0, 0, 0, 0)
        log = play(source[0](*source[1:]), controller, params, result, self.max_steps)
        if record_trace:
            result.actions, result.source = log, source
        return result


__all__ = ["Environment", "EpisodeRunner"]
