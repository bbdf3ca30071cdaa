"""autotts: agentic discovery of test-time-scaling controllers on replay environments.

The public API: the controller contract (:class:`Controller`, actions, :class:`EpisodeState`),
aggregation and confidence helpers for controllers, the replay environment, and the evaluator.
Heavier pieces (evaluation with worker processes, plots) load on first use.
"""

from .contract import (
    Action,
    ActionError,
    Answer,
    Branch,
    Continue,
    Controller,
    ControllerFailure,
    EpisodeState,
    Generate,
    Note,
    Probe,
    Prune,
    Read,
)
from .engine import Environment
from .errors import AutoTTSError, BadInput, RunFailure
from .registry import make, register
from .signals import group_confidences, lowest_group_confidence, percentile
from .voting import beta_confidence, majority, top_two, vote_confidence, weighted_majority

__version__ = "0.1.0"

_LAZY = {
    "ReplayEnvironment": "replay",
    "EpisodeResult": "engine",
    "StoreError": "store",
    "list_environments": "store",
    "load_controller": "loader",
    "ControllerLoadError": "loader",
    "evaluate": "evaluation",
    "RunConfig": "specs",
    "parse_spec": "specs",
    "check": "checker",
    "CheckReport": "checker",
    "resolve_ids": "registry",
    "discover": "discovery.runs",
    "load_run": "discovery.runs",
    "DiscoveryRun": "discovery.runs",
    "Strategy": "discovery.strategies",
    "OptunaStrategy": "discovery.strategies",
    "TuneStrategy": "discovery.strategies",
    "LLMStrategy": "discovery.strategies",
    "EvaluationReport": "evaluation",
}

__all__ = [
    "AutoTTSError",
    "BadInput",
    "RunFailure",
    "Environment",
    "make",
    "register",
    "Action",
    "ActionError",
    "Answer",
    "Branch",
    "Continue",
    "Controller",
    "ControllerFailure",
    "EpisodeState",
    "Generate",
    "Note",
    "Probe",
    "Prune",
    "Read",
    "beta_confidence",
    "majority",
    "top_two",
    "vote_confidence",
    "weighted_majority",
    "group_confidences",
    "lowest_group_confidence",
    "percentile",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'autotts' has no attribute {name!r}")
