"""Running untrusted controller code (anything an LLM wrote, or a file marked as such).

The process that runs untrusted code holds no store data: the parent is the engine of its
episodes (:mod:`.serving`), the worker plays only the controller against the observations its
actions reveal (:mod:`.remote`), over a strict protocol (:mod:`.protocol`). Around it, the
operating system (:mod:`.isolation`: namespaces, an unprivileged uid, Landlock, seccomp, no
clock or random source, resource limits) and the parent's limits and checks
(:mod:`.processes`, :mod:`.runner`). The static check (:mod:`.static`) and the worker's audit
hook only give early, readable feedback.
"""

from .limits import SandboxLimits
from .processes import IsolationUnavailable, isolation_problems, require_isolation
from .runner import IN_FLIGHT, MAX_BRANCHES, SandboxOutcome, run_sandboxed
from .sandboxed_controller import SandboxedController, open_controller
from .static import SAFE_MODULES, static_problems

__all__ = [
    "IN_FLIGHT",
    "MAX_BRANCHES",
    "SAFE_MODULES",
    "IsolationUnavailable",
    "SandboxLimits",
    "SandboxOutcome",
    "SandboxedController",
    "isolation_problems",
    "open_controller",
    "require_isolation",
    "run_sandboxed",
    "static_problems",
]
