"""Running untrusted controller code (anything an LLM wrote, or a file marked as such).

The boundary is the operating system (:mod:`.isolation`: namespaces, an unprivileged uid,
Landlock, seccomp, resource limits) and the parent's own recomputation of every episode from
the worker's action log (:mod:`.protocol`, :mod:`.runner`, :mod:`.processes`). The static
check (:mod:`.static`) and the worker's audit hook only give early, readable feedback.
"""

from .processes import (
    IsolationUnavailable,
    SandboxLimits,
    isolation_problems,
    require_isolation,
)
from .runner import MAX_BRANCHES, SandboxOutcome, run_sandboxed
from .static import SAFE_MODULES, static_problems

__all__ = [
    "MAX_BRANCHES",
    "SAFE_MODULES",
    "IsolationUnavailable",
    "SandboxLimits",
    "SandboxOutcome",
    "isolation_problems",
    "require_isolation",
    "run_sandboxed",
    "static_problems",
]
