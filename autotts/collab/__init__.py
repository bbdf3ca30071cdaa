"""Multi-LLM collaboration: graphs of models as data, compiled to controllers that run on
cross-model replay environments (:mod:`autotts.envs.cross_model`), and searched with Optuna or an
Agent-REINFORCE-style agent. Names load on first use, so the CLI starts fast."""

_LAZY = {
    "CollabGraph": "graph",
    "GraphError": "graph",
    "Node": "graph",
    "GraphController": "execute",
    "compile_graph": "compile",
    "export_graph": "compile",
    "model_facts": "compile",
    "CrossSpec": "evaluate",
    "GraphEvaluator": "evaluate",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'autotts.collab' has no attribute {name!r}")
