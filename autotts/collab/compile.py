"""From a graph spec to a runnable, exportable controller: checks against an environment
(unknown models, budgets), the full-width cost estimate, and export as a controller file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..utils.atomic_files import atomic_write_text
from .execute import GraphController
from .graph import CollabGraph, GraphError


@dataclass(frozen=True)
class ModelFacts:
    """What an environment offers of one model: branches per question, their mean length
    in tokens, tokens per interval, and the cost of one token (1.0 where tokens are the
    cost)."""

    branches: int
    mean_tokens: float
    delta: int
    rate: float


def model_facts(env) -> dict[str, ModelFacts]:
    """Per-model facts of a cross-model or single-model replay environment."""
    stores = getattr(env, "stores", None) or {env.model: env}
    rates = getattr(env, "rates", None) or {}
    facts = {}
    for model, store in stores.items():
        tokens = [t for q in store.questions for t in q.tokens]
        branches = min(len(q.tokens) for q in store.questions)
        delta = store.questions[0].delta
        facts[model] = ModelFacts(branches, sum(tokens) / len(tokens), delta, rates.get(model, 1.0))
    return facts


def compile_graph(graph: CollabGraph, env, budget: float | None = None) -> GraphController:
    """A controller for ``graph`` after checking it against ``env``: every model exists there,
    no model is asked for more branches than a question has, and (with ``budget``, per
    question in the environment's cost unit) the full-width cost estimate fits the budget."""
    live = graph.needs_live()
    if live:
        raise GraphError(
            f"node {live[0].id!r} has role {live[0].role!r}, which needs a live backend: it "
            "works on generated text, and replay stores hold only answers (run the graph "
            "on a live backend instead)"
        )
    facts = model_facts(env)
    for node in graph.nodes:
        if node.model is not None and node.model not in facts:
            raise GraphError(
                f"node {node.id!r}: unknown model {node.model!r}; this environment has "
                f"{', '.join(facts)}"
            )
    controller = GraphController(graph)
    widths: dict[str, int] = {}
    for node in graph.nodes:
        if node.role == "generate":
            widths[node.model] = widths.get(node.model, 0) + node_width(controller, node)
    for model, width in widths.items():
        if width > facts[model].branches:
            users = [n.id for n in graph.nodes if n.model == model]
            raise GraphError(
                f"over budget: nodes {users} may open {width} {model} branches, but each "
                f"question has {facts[model].branches}; lower their width or β"
            )
    if budget is not None:
        estimate = full_width_cost(controller, facts)
        if estimate > budget:
            raise GraphError(
                f"over budget: running every branch the graph may open costs ≈ {estimate:.3g} "
                f"per question (mean branch lengths), above the budget {budget:.3g}"
            )
    return controller


def node_width(controller: GraphController, node, scale: float = 1.0) -> int:
    """The most branches a generate node may open (its width, or its controller's)."""
    width = controller.node_width(node, scale)
    if width is not None:
        return width
    params = controller.node_params(node, scale)
    return max((int(params[p]) for p in ("max_branches", "n") if p in params), default=1)


def full_width_cost(controller: GraphController, facts: dict[str, ModelFacts]) -> float:
    """Cost of running every branch each generate node may open to its mean length."""
    total = 0.0
    for node in controller.graph.nodes:
        if node.role == "generate":
            f = facts[node.model]
            length = f.mean_tokens
            if node.max_depth is not None:
                length = min(length, node.max_depth * f.delta)
            total += node_width(controller, node) * length * f.rate
    return total


EXPORT_TEMPLATE = '''"""Collaboration graph exported by autotts (its description is in the comments above).

Run it like any controller: ``autotts collab eval`` on a cross-model environment, or load this
file with ``autotts.load_controller``. The graph (nodes, edges, budgets) is GRAPH, in JSON.
"""

from autotts.collab import GraphController

GRAPH = r"""
{graph}
"""


class {cls}(GraphController):
    name = {name}
    graph_data = GRAPH
'''


def export_graph(graph: CollabGraph, path: str | Path, header: str = "") -> Path:
    """Write ``graph`` as a single-file controller (loadable by ``autotts.load_controller``);
    ``header`` and the graph's description become comment lines at the top."""
    data = graph.model_dump(mode="json", exclude_defaults=True)
    data["edges"] = [list(e) for e in graph.edges]
    cls = "".join(part.capitalize() for part in _words(graph.name)) or "Graph"
    source = EXPORT_TEMPLATE.format(
        graph=json.dumps(data, indent=4),  # quotes inside strings are \", so no """ occurs
        name=json.dumps(graph.name),
        cls=f"{cls}Graph" if cls[0].isalpha() else f"Graph{cls}",
    )
    comments = [f"Collaboration graph {graph.name!r}", *header.splitlines()]
    comments += graph.description.splitlines()
    source = "".join(f"# {line}".rstrip() + "\n" for line in comments) + source
    return atomic_write_text(path, source)


def _words(name: str) -> list[str]:
    return [w for w in "".join(c if c.isalnum() else " " for c in name).split() if w]


__all__ = ["ModelFacts", "compile_graph", "export_graph", "full_width_cost", "model_facts"]
