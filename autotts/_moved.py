"""Module paths from before autotts grouped its modules into packages by concept: importing
an old path (``autotts.replay``) gives the module at its new place (``autotts.envs.replay``)
with a :class:`DeprecationWarning` naming it, so code written against the old layout keeps
running. ``autotts.evaluation`` became a package that still exports what the module did."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "autotts._replay_loop": "autotts.envs._replay_loop",
    "autotts.arguments": "autotts.core.arguments",
    "autotts.autotts_api": "autotts.loading.autotts_paper_api",
    "autotts.baseline_cache": "autotts.evaluation.sc64_cache",
    "autotts.budgets": "autotts.results.budgets",
    "autotts.bundled": "autotts.utils.project_files",
    "autotts.canonical": "autotts.envs.answer_groups",
    "autotts.checker": "autotts.evaluation.checker",
    "autotts.collab.outputs": "autotts.collab.eval_tables",
    "autotts.collab.pipeline": "autotts.collab.search_run",
    "autotts.collab.report": "autotts.collab.frontier_report",
    "autotts.collab.space": "autotts.collab.graph_space",
    "autotts.collab.strategies": "autotts.collab.graph_strategies",
    "autotts.contract": "autotts.core.contract",
    "autotts.crossmodel": "autotts.envs.cross_model",
    "autotts.discovery.pipeline": "autotts.discovery.stages",
    "autotts.discovery.report": "autotts.discovery.run_report",
    "autotts.discovery.space": "autotts.discovery.search_space",
    "autotts.engine": "autotts.core.engine",
    "autotts.episodes": "autotts.core.episodes",
    "autotts.fetch": "autotts.envs.fetch",
    "autotts.files": "autotts.utils.atomic_files",
    "autotts.importers": "autotts.envs.sample_import",
    "autotts.live.answers": "autotts.live.settings",
    "autotts.live.environment": "autotts.live.live_environment",
    "autotts.loader": "autotts.loading.controller_files",
    "autotts.outputs": "autotts.results.writers",
    "autotts.provenance": "autotts.results.provenance",
    "autotts.registry": "autotts.envs.registry",
    "autotts.replay": "autotts.envs.replay",
    "autotts.replay_loop": "autotts.envs.replay_loop",
    "autotts.report": "autotts.results.evaluation_report",
    "autotts.rundir": "autotts.results.run_directory",
    "autotts.sandbox.evaluation": "autotts.sandbox.sandboxed_evaluation",
    "autotts.signals": "autotts.core.signals",
    "autotts.specs": "autotts.loading.run_configs",
    "autotts.stats": "autotts.results.stats",
    "autotts.store": "autotts.envs.stores",
    "autotts.summaries": "autotts.results.curve_summaries",
    "autotts.traces": "autotts.results.traces",
    "autotts.tracking": "autotts.cli.tracking",
    "autotts.vector": "autotts.envs.replay_arrays",
    "autotts.voting": "autotts.core.voting",
}


class OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths in :data:`MOVED` and loads the module from its new place."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {MOVED[spec.name]}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:
        pass  # the module at its new place is already executed


def install() -> None:
    if not any(isinstance(finder, OldPaths) for finder in sys.meta_path):
        sys.meta_path.append(OldPaths())
