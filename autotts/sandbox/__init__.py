"""Running untrusted controller code (anything an LLM wrote, or a file marked as such).

The process that runs untrusted code holds no store data: the parent is the engine of its
episodes (:mod:`.serving`), the worker plays only the controller against the observations its
actions reveal (:mod:`.remote`), over a strict protocol (:mod:`.protocol`). Around it, the
operating system (:mod:`.isolation`: namespaces, an unprivileged uid, Landlock, seccomp, no
clock or random source, resource limits) and the parent's limits and checks
(:mod:`.processes`, :mod:`.runner`). The static check (:mod:`.static`) and the worker's audit
hook only give early, readable feedback.
"""

# Loaded on first use: a worker process imports this package, and needs none of the parent's
# side (the runner, its engines and their stores).
_LAZY = {
    "SandboxLimits": "limits",
    "IsolationUnavailable": "processes",
    "isolation_problems": "processes",
    "require_isolation": "processes",
    "IN_FLIGHT": "runner",
    "MAX_BRANCHES": "runner",
    "SandboxOutcome": "runner",
    "run_sandboxed": "runner",
    "SandboxedController": "sandboxed_controller",
    "open_controller": "sandboxed_controller",
    "SAFE_MODULES": "static",
    "static_problems": "static",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'autotts.sandbox' has no attribute {name!r}")
