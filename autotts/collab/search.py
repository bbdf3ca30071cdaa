"""Searching collaboration graphs under a cost budget: Optuna, and an Agent-REINFORCE-style
agent over a probabilistic graph.

Both search :class:`~autotts.collab.graph_space.GraphSpace` on the search dataset and record every
evaluation in ``RUN/evaluations.jsonl`` (choices, graph, accuracy, tokens, cost, per-model
tokens). Objectives: accuracy up, cost down (Optuna: two objectives with the budget as a
constraint); the scalar used to compare searches is :func:`objective`, the accuracy of a
graph within budget (over-budget graphs are penalised by how far they overshoot).

The agent keeps a *probabilistic graph*: a probability for every option of every decision
(structure, each slot's model, controller and β, gate threshold, vote weight). Each
iteration it samples a batch of graphs, evaluates them in replay, and updates the
probabilities. With an LLM (``llm``), the update is the LLM's: it reads the batch's results
as text (accuracy, cost against the budget, per-model tokens, the best so far) and answers
with new probabilities and its reasoning, the "textual gradient" of Agent-REINFORCE
(Wang et al., 2025). Without one, or when a reply is unusable, the update is the REINFORCE
gradient step on the same distribution (reward = objective / 100, batch-mean baseline).

Runs resume: evaluations are cached by graph, and both searches are deterministic given
their seed and the results, so a resumed run replays its recorded evaluations for free.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..results.run_directory import RunDirectory
from .compile import compile_graph
from .evaluate import GraphEvaluator
from .graph import GraphError
from .graph_space import STRUCTURES, GraphSpace

MIN_PROBABILITY = 0.01


def objective(accuracy: float, cost: float, budget: float) -> float:
    """Accuracy (%) within budget; over budget, minus 100 points per budget overshot."""
    return accuracy if cost <= budget else accuracy - 100.0 * (cost / budget - 1.0)


class GraphSearch:
    """Evaluates choices of a :class:`GraphSpace` for a run, with a cache of recorded ones."""

    def __init__(
        self,
        run: RunDirectory,
        evaluator: GraphEvaluator,
        budget: float,
        progress: Callable[[dict], None] | None = None,
    ):
        self.run, self.evaluator, self.budget = run, evaluator, budget
        self.space = GraphSpace(evaluator.env.models)
        self.progress = progress
        self.cache = {r["label"]: r for r in run.records("evaluations.jsonl")}
        self.count = 0  # evaluations of this search, cached ones included

    def evaluate(self, choices: dict, strategy: str) -> dict:
        choices = {k: choices[k] for k in self.space.used(choices["structure"])}
        label = self.space.label(choices)
        self.count += 1
        record = self.cache.get(label)
        if record is None:
            record = {"label": label, "strategy": strategy, "choices": choices}
            try:
                graph = self.space.build(choices)
                compile_graph(graph, self.evaluator.env)
            except GraphError as exc:
                record.update(error=str(exc), accuracy=0.0, tokens=0.0, cost=math.inf)
            else:
                score = self.evaluator.score(graph)
                record.update(graph=graph.model_dump(mode="json"), **score.to_dict())
            record["objective"] = objective(record["accuracy"], record["cost"], self.budget)
            self.run.append(record, "evaluations.jsonl")
            self.cache[label] = record
        record = dict(record, n=self.count)
        if self.progress:
            self.progress(record)
        return record


# --- Optuna -------------------------------------------------------------------------------


def optuna_search(
    search: GraphSearch, trials: int, seed: int = 0, pareto: bool = True
) -> list[dict]:
    """TPE over the graph space. ``pareto``: two objectives (accuracy ↑, cost ↓) with
    cost ≤ budget as a constraint, so the whole front is explored; otherwise the single
    objective :func:`objective` (best accuracy within budget)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = search.budget
    sampler = optuna.samplers.TPESampler(seed=seed)
    directions = ["maximize", "minimize"] if pareto else ["maximize"]
    study = optuna.create_study(directions=directions, sampler=sampler)
    space, records = search.space, []

    def trial_objective(trial):
        choices = {"structure": trial.suggest_categorical("structure", STRUCTURES)}
        for name in space.used(choices["structure"])[1:]:
            choices[name] = trial.suggest_categorical(name, space.decisions[name].options)
        record = search.evaluate(choices, "optuna")
        records.append(record)
        cost = record["cost"] if math.isfinite(record["cost"]) else 1e6 * budget
        if not pareto:
            return record["objective"]
        trial.set_constraint("cost", cost / budget - 1.0)  # feasible when <= 0
        return record["accuracy"], cost

    study.optimize(trial_objective, n_trials=trials)
    return records


# --- Agent-REINFORCE ----------------------------------------------------------------------


class ProbabilisticGraph:
    """A probability for each option of each decision of a :class:`GraphSpace`."""

    def __init__(self, space: GraphSpace):
        self.space = space
        self.probs = {
            name: [1.0 / len(d.options)] * len(d.options) for name, d in space.decisions.items()
        }

    def sample(self, rng: random.Random) -> dict:
        choices: dict = {}
        structure = self._draw("structure", rng)
        choices["structure"] = structure
        for name in self.space.used(structure)[1:]:
            choices[name] = self._draw(name, rng)
        return choices

    def _draw(self, name: str, rng: random.Random):
        options = self.space.decisions[name].options
        return rng.choices(options, weights=self.probs[name])[0]

    def reinforce(self, batch: list[tuple[dict, float]], lr: float) -> None:
        """One REINFORCE step: move each used decision toward the options of above-average
        samples, away from below-average ones (advantages standardised within the batch)."""
        rewards = [r for _, r in batch]
        baseline = sum(rewards) / len(rewards)
        spread = (sum((r - baseline) ** 2 for r in rewards) / len(rewards)) ** 0.5
        for choices, reward in batch:
            advantage = (reward - baseline) / (spread + 1e-3)
            for name, value in choices.items():
                options = self.space.decisions[name].options
                p = self.probs[name]
                for i, option in enumerate(options):
                    p[i] += lr * advantage * ((option == value) - p[i])
                self._normalise(name)

    def _normalise(self, name: str) -> None:
        p = [max(0.0, x) for x in self.probs[name]]
        total = sum(p) or 1.0
        free = 1.0 - MIN_PROBABILITY * len(p)  # every option keeps at least MIN_PROBABILITY
        self.probs[name] = [MIN_PROBABILITY + free * x / total for x in p]

    def apply(self, updates: dict, mix: float) -> list[str]:
        """Blend in an LLM's proposed distribution (``{decision: {option: weight}}``, options
        left out weigh 0): ``p ← (1 - mix) p + mix proposal``; returns what could not be
        applied."""
        problems = []
        for name, proposal in updates.items():
            decision = self.space.decisions.get(name)
            if decision is None or not isinstance(proposal, dict):
                problems.append(f"unknown decision {name!r}")
                continue
            labels = [_option_label(o) for o in decision.options]
            target = [0.0] * len(labels)  # options the proposal leaves out get nothing
            for key, value in proposal.items():
                if str(key) not in labels or not isinstance(value, int | float) or value < 0:
                    problems.append(f"{name}: bad option or probability {key!r}: {value!r}")
                    continue
                target[labels.index(str(key))] = float(value)
            total = sum(target) or 1.0
            self.probs[name] = [
                (1 - mix) * p + mix * t / total
                for p, t in zip(self.probs[name], target, strict=True)
            ]
            self._normalise(name)
        return problems

    def as_text(self) -> dict:
        return {
            name: {
                _option_label(o): round(p, 3)
                for o, p in zip(d.options, self.probs[name], strict=True)
            }
            for name, d in self.space.decisions.items()
        }


def _option_label(option) -> str:
    return f"{option:g}" if isinstance(option, float) else str(option)


@dataclass
class AgentSettings:
    trials: int
    batch: int = 4
    lr: float = 0.1
    seed: int = 0
    mix: float = 0.5  # how far one LLM update moves the distribution


AGENT_PROMPT = """You are optimising a probabilistic multi-LLM collaboration graph for test-time
scaling on math problems (replayed AIME questions). Each decision has a probability per option;
graphs are sampled from them. Goal: highest accuracy at mean cost <= {budget:.3g} {unit} per question.

Current probabilities (JSON):
{probs}

This batch (accuracy %, cost as a fraction of the budget, tokens per model):
{batch}

Best within budget so far: {best}

Reply with one JSON object: {{"feedback": "<what the results suggest>",
"updates": {{"<decision>": {{"<option>": <probability>, ...}}, ...}}}} — only decisions you
want to change; for those, options you leave out get probability 0 in your proposal, and the
values need not sum to 1 (they are normalised). Your proposal is blended with the current
probabilities."""


def agent_search(search: GraphSearch, settings: AgentSettings, llm=None) -> list[dict]:
    """Agent-REINFORCE over :class:`ProbabilisticGraph` (see the module docstring); ``llm``
    is an :class:`~autotts.discovery.llm.LLMClient` or ``None`` for the numeric update."""
    rng = random.Random(settings.seed)
    dist = ProbabilisticGraph(search.space)
    records: list[dict] = []
    iteration = 0
    while len(records) < settings.trials:
        iteration += 1
        size = min(settings.batch, settings.trials - len(records))
        batch = [search.evaluate(dist.sample(rng), "agent") for _ in range(size)]
        records += batch
        rewarded = [(r["choices"], r["objective"] / 100.0) for r in batch]
        if llm is None or not _llm_update(llm, dist, batch, records, search, settings, iteration):
            dist.reinforce(rewarded, settings.lr)
        search.run.append({"iteration": iteration, "probs": dist.as_text()}, "agent.jsonl")
    return records


def _llm_update(llm, dist, batch, records, search, settings, iteration) -> bool:
    feasible = [r for r in records if r["cost"] <= search.budget]
    best = max(feasible, key=lambda r: r["accuracy"], default=None)
    lines = [
        f"- {r['label']}: {r['accuracy']:.1f}%, cost {r['cost'] / search.budget:.2f}× budget, "
        + ", ".join(f"{m} {t / 1000:.0f}k" for m, t in (r.get("model_tokens") or {}).items() if t)
        for r in batch
    ]
    text = AGENT_PROMPT.format(
        budget=search.budget,
        unit=search.evaluator.env.unit,
        probs=json.dumps(dist.as_text()),
        batch="\n".join(lines),
        best=f"{best['label']} {best['accuracy']:.1f}%" if best else "none yet",
    )
    reply = llm.chat(iteration, [{"role": "user", "content": text}])
    match = re.search(r"\{.*\}", reply or "", re.DOTALL)
    try:
        data = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("updates"), dict):
        search.run.append({"iteration": iteration, "llm_update": "unusable reply"}, "agent.jsonl")
        return False
    problems = dist.apply(data["updates"], settings.mix)
    search.run.append(
        {
            "iteration": iteration,
            "feedback": str(data.get("feedback", ""))[:2000],
            "problems": problems,
        },
        "agent.jsonl",
    )
    return True


def evaluations_to_reach(records: list[dict], target: float) -> int | None:
    """1-based number of evaluations until the best objective reaches ``target``."""
    best = -math.inf
    for i, r in enumerate(records, 1):
        best = max(best, r["objective"])
        if best >= target:
            return i
    return None


__all__ = [
    "AgentSettings",
    "GraphSearch",
    "ProbabilisticGraph",
    "agent_search",
    "evaluations_to_reach",
    "objective",
    "optuna_search",
]
