"""Candidates see only what they pay for: whatever a sandboxed candidate reaches (every object
the garbage collector knows, every frame, every module's globals, by any route), it finds no
answer its actions have not revealed and no gold answer, because the process it runs in never
held them (the engine is the parent's).

The store here is made for the test: every probe answer, final answer and the gold answer is a
distinctive string (``zz-…``), so a walker can tell a secret from anything else in memory (one
episode per process: what another episode revealed would be there too, which the determinism
check's replay in another arrangement catches). The
same walker run in process (where the engine does hold the store) finds the secrets: the test
can fail.
"""

from __future__ import annotations

import pytest
from conftest import tiny_store

from autotts.envs.replay import ReplayEnvironment
from autotts.sandbox import SandboxLimits, isolation_problems, run_sandboxed

pytestmark = pytest.mark.skipif(
    bool(isolation_problems()), reason=f"no OS isolation here: {isolation_problems()}"
)

LIMITS = SandboxLimits(memory_mb=2048, cpu_s=120, step_cpu_s=60, idle_s=10)

WALKER = '''
import sys
from autotts import Branch, Controller

def strings_reachable(roots, limit=1_000_000):
    """Every str reachable from roots: containers, frames, generators, greenlets, functions,
    modules, instance attributes and slots, and the collector's referents where it exists."""
    try:
        gc = __import__("gc")
    except BaseException:
        gc = None
    seen, found, stack = set(), set(), list(roots)
    while stack and len(seen) < limit and len(stack) < 4 * limit:
        obj = stack.pop()
        if type(obj) is str:
            if obj.startswith("zz-") and len(obj) > 3:
                found.add(obj)
            continue
        if id(obj) in seen or type(obj) in (int, float, bool, bytes, type(None)):
            continue
        seen.add(id(obj))
        if gc is not None:
            try:
                stack.extend(gc.get_referents(obj))
            except BaseException:
                pass
        if isinstance(obj, dict):
            stack.extend(obj.keys()); stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        for name in ("f_locals", "f_globals", "f_back", "gi_frame", "cr_frame", "gr_frame",
                     "parent", "__closure__", "__globals__", "__defaults__", "__dict__",
                     "cell_contents", "tb_frame", "tb_next", "__self__", "__wrapped__"):
            try:
                stack.append(getattr(obj, name))
            except BaseException:
                pass
        for name in getattr(type(obj), "__slots__", ()) or ():
            try:
                stack.append(getattr(obj, name))
            except BaseException:
                pass
    return found

def roots_of(route, state):
    if route == "gc":
        return __import__("gc").get_objects()
    if route == "traceback":
        try:
            raise ValueError
        except ValueError as exc:
            return [exc.__traceback__.tb_frame]
    if route == "generator":
        frame = sys._getframe()
        return [__import__("operator").attrgetter("f_back")(frame)]
    if route == "greenlet":
        greenlet = sys.modules["greenlet"]
        current = greenlet.getcurrent()
        return [current, current.gr_frame, current.parent]
    if route == "modules":
        return [sys.modules]
    if route == "format":  # attribute walks written inside a format string
        text = "{0.f_back.f_back.f_locals}{0.f_back.f_globals}".format(sys._getframe())
        return [part for part in text.split("'") if part.startswith("zz-")]
    if route == "signal-handler":  # a handler's frame argument, where one could be installed
        signal = sys.modules["signal"]
        frames = []
        try:
            signal.signal(signal.SIGPROF, lambda number, frame: frames.append(frame))
            signal.setitimer(signal.ITIMER_PROF, 0.001)
            while not frames:
                pass
        except OSError:  # refused in the sandbox: walk from here instead
            frames.append(sys._getframe())
        return frames
    if route == "builtins-exec":  # exec reached through another module
        scope = {"sys": sys}
        __import__("dataclasses").builtins.exec("roots = list(sys.modules.values())", scope)
        return scope["roots"]
    raise ValueError(route)

class Walker(Controller):
    name = "walker"

    @staticmethod
    def schedule(beta):
        return {}

    def run(self, state):
        yield Branch(1)
        found = strings_reachable(roots_of(ROUTE, state))
        revealed = {a for seen in state.history for a in seen}
        secrets = sorted(found - revealed)
        return ",".join(secrets)[:900] or "clean"
'''


@pytest.fixture(scope="module")
def secret_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("secret-store")
    branches = [[[f"zz-probe-{b}-{k}" for k in range(3)], 2000 + 10 * b, f"zz-final-{b}"]
                for b in range(8)]  # fmt: skip
    tiny_store(root / "Secret" / "store.json", branches, gold="zz-gold", question="What?")
    env = ReplayEnvironment.load("Secret/store", root)
    env.store_dir = root
    return env


ROUTES = [
    "gc", "traceback", "generator", "greenlet", "modules", "format", "signal-handler",
    "builtins-exec",
]  # fmt: skip


def walker(route: str) -> str:
    return WALKER.replace("ROUTE", repr(route))


@pytest.mark.parametrize("route", ROUTES)
def test_a_sandboxed_candidate_finds_nothing_unrevealed(route, secret_env):
    outcome = run_sandboxed(
        walker(route), {"Secret/store": secret_env}, [(None, {})], 1, limits=LIMITS,
        static_check=False, audit_hook=False, max_branches=None,
    )  # fmt: skip
    assert outcome.ok, outcome.reason
    answers = [r.answer or r.error for *_, r in outcome.results]
    assert answers == ["clean"], answers


IN_PROCESS = """
import sys
from autotts.loading.controller_files import controller_class_from_source
from autotts.envs.replay import ReplayEnvironment
env = ReplayEnvironment.load("Secret/store", sys.argv[1])
controller = controller_class_from_source(sys.stdin.read(), "walker.py")()
print(env.run_episode(controller, {}, 0, 0).answer)
"""


@pytest.mark.parametrize("route", ["gc", "traceback", "modules"])
def test_the_same_walker_in_process_finds_the_secrets(route, secret_env):
    """Where the engine shares the process (trusted evaluation, here in a fresh interpreter),
    the walker reaches the store: the sandboxed test above is a real test."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", IN_PROCESS, str(secret_env.store_dir)],
        input=walker(route), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "zz-final" in done.stdout and "zz-gold" in done.stdout, done.stdout
