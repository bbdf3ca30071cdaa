"""Evaluating controllers: :func:`~.evaluator.evaluate` over environments, seeds and sweeps
(in worker processes, or in the sandbox for untrusted files), the contract checker
(:mod:`.checker`) and the cached SC@64 baseline (:mod:`.sc64_cache`).
"""

_LAZY = {
    "EvaluationReport": "..results.evaluation_report",  # the old module's names, kept
    "Row": "..results.evaluation_report",
    "UnitResult": "..results.evaluation_report",
    "RunConfig": "..loading.run_configs",
    "DEFAULT_BETAS": "evaluator",
    "evaluate": "evaluator",
    "run_unit": "evaluator",
    "summarise_units": "evaluator",
    "check_controller": "checker",
    "sc64_report": "sc64_cache",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = _LAZY[name] if _LAZY[name].startswith(".") else f".{_LAZY[name]}"
        return getattr(importlib.import_module(module, __name__), name)
    raise AttributeError(f"module 'autotts.evaluation' has no attribute {name!r}")
