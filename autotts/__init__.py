"""autotts: agentic discovery of test-time-scaling controllers on replay environments.

The public API: the controller contract (:class:`Controller`, actions, :class:`EpisodeState`),
aggregation and confidence helpers for controllers, the composable policy discovered families
subclass (:class:`ComposableController`), the replay environment, and the evaluator.
Heavier pieces (evaluation with worker processes, plots) load on first use.
"""

from . import _moved
from .core.contract import (
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
from .core.environment import Environment
from .core.signals import group_confidences, lowest_group_confidence, percentile
from .core.voting import beta_confidence, majority, top_two, vote_confidence, weighted_majority
from .discovery.composable import ComposableController  # noqa: E402 (it imports the names above)
from .envs.registry import make, register
from .errors import AutoTTSError, BadInput, RunFailure

__version__ = "0.1.0"

_moved.install()  # old module paths (before the packages by concept) still import

_LAZY = {
    "ReplayEnvironment": "envs.replay",
    "EpisodeResult": "core.engine",
    "StoreError": "envs.stores",
    "list_environments": "envs.stores",
    "load_controller": "loading.controller_files",
    "ControllerLoadError": "loading.controller_files",
    "open_controller": "sandbox.sandboxed_controller",
    "SandboxedController": "sandbox.sandboxed_controller",
    "evaluate": "evaluation.evaluator",
    "RunConfig": "loading.run_configs",
    "parse_spec": "loading.run_configs",
    "check": "evaluation.checker",
    "CheckReport": "evaluation.checker",
    "resolve_ids": "envs.registry",
    "discover": "discovery.runs",
    "load_run": "discovery.runs",
    "DiscoveryRun": "discovery.runs",
    "Strategy": "discovery.strategies",
    "OptunaStrategy": "discovery.strategies",
    "TuneStrategy": "discovery.strategies",
    "LLMStrategy": "discovery.strategies",
    "EvaluationReport": "results.evaluation_report",
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
    "ComposableController",
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
