"""Multi-LLM collaboration: graphs of models as data, compiled to controllers that run on
cross-model replay environments (:mod:`autotts.crossmodel`), and searched with Optuna or an
Agent-REINFORCE-style agent."""

from .compile import compile_graph, export_graph, model_facts
from .execute import GraphController
from .graph import CollabGraph, GraphError, Node

__all__ = [
    "CollabGraph",
    "GraphController",
    "GraphError",
    "Node",
    "compile_graph",
    "export_graph",
    "model_facts",
]
