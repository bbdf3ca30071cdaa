"""The collaboration searches as strategy objects (the same base as discovery's, see
:class:`autotts.discovery.strategies.Strategy`): each runs the search stage of a
collaboration run, recording every graph it evaluates in ``RUN/evaluations.jsonl``."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import ClassVar

from ..discovery.strategies import Strategy
from .evaluate import GraphEvaluator
from .search import AgentSettings, GraphSearch, agent_search, optuna_search


@contextlib.contextmanager
def graph_search(run, settings, log=None):
    """A :class:`GraphSearch` over the settings' cross-model environment (workers shut down
    on exit); ``log(line)`` gets one line per evaluated graph."""

    def show(record: dict) -> None:
        if log:
            label = record["label"][:70]
            log(f"  {record['n']:>4} {label:<70} {record['accuracy']:6.2f}%  {record['cost']:.3g}")

    with GraphEvaluator(settings.spec(), settings.seeds, settings.workers) as evaluator:
        yield GraphSearch(run, evaluator, settings.budget, show)


@dataclass(repr=False)
class GraphOptunaStrategy(Strategy):
    """Optuna's TPE over the graph space: ``objective`` ``"pareto"`` (accuracy and cost, the
    budget as a constraint, so the whole front is explored) or ``"budget"`` (the best
    accuracy within the budget)."""

    objective: str = "pareto"
    seed: int = 0
    name: ClassVar[str] = "optuna"

    def search(self, run, settings, name=None, progress=None, log=None) -> list[dict]:
        with graph_search(run, settings, log) as search:
            return optuna_search(search, settings.trials, self.seed, self.objective == "pareto")


@dataclass(repr=False)
class AgentStrategy(Strategy):
    """Agent-REINFORCE: a distribution over the graph space sharpened by policy gradients,
    optionally steered by an LLM (``llm``: model and base URL; its key is never recorded)."""

    batch: int = 4
    lr: float = 0.1
    seed: int = 0
    llm: dict | None = None
    api_key: str | None = field(default=None, compare=False)
    name: ClassVar[str] = "agent"

    def options(self) -> dict:
        return {"batch": self.batch, "lr": self.lr, "seed": self.seed, "llm": self.llm}

    def search(self, run, settings, name=None, progress=None, log=None) -> list[dict]:
        client = None
        if self.llm:
            from ..discovery.llm import LLMClient

            client = LLMClient(run, self.llm, self.api_key)
        agent = AgentSettings(settings.trials, self.batch, self.lr, self.seed)
        with graph_search(run, settings, log) as search:
            return agent_search(search, agent, client)


def collab_strategy(settings, api_key: str | None = None) -> Strategy:
    """The strategy a collaboration run's settings name, with their options."""
    if settings.strategy == "optuna":
        return GraphOptunaStrategy(settings.objective, settings.seed)
    return AgentStrategy(settings.batch, settings.lr, settings.seed, settings.llm, api_key)


__all__ = ["AgentStrategy", "GraphOptunaStrategy", "collab_strategy", "graph_search"]
