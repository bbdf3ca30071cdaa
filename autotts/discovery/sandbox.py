"""Running untrusted controller code (anything an LLM wrote).

Defence in depth; a candidate is rejected with a recorded reason at the first layer it fails:

1. **static check** (:func:`static_problems`): the source parses; imports only a small
   allow-list of pure modules and the public controller API of ``autotts``; no ``eval``,
   ``exec``, ``open``, ``getattr`` and friends; no dunder or frame/traceback attributes, no
   private attributes of other objects.
2. **separate processes** (``python -I -m autotts.discovery.sandbox_worker``) in a fresh empty
   working directory with a minimal environment, an address-space limit, a CPU-time limit,
   and a wall-time limit enforced by the parent (it kills the process group).
3. **in the worker**, an audit hook installed before the candidate is executed refuses file
   opens, sockets, subprocesses, ``os.system``/``exec``/``fork``, frame and GC introspection,
   ``ctypes`` and any import outside the allow-list. A per-episode watchdog and step limit end
   runaway episodes.
4. **no secrets to find**: the worker receives the questions' branch data only — never a gold
   answer, never a path of the run directory or of a store; scoring happens in the parent.
   At most 64 branches can be opened (the β contract).

Determinism is checked across two *different* processes (different hash seeds), so
randomness, clocks and set-iteration order are all caught.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import autotts

SAFE_MODULES = frozenset(
    {
        "__future__",
        "abc",
        "bisect",
        "collections",
        "dataclasses",
        "enum",
        "fractions",
        "functools",
        "heapq",
        "itertools",
        "math",
        "operator",
        "statistics",
        "typing",
    }
)
# the controller API of autotts: its public names, minus the engine/evaluator ones it loads lazily
AUTOTTS_NAMES = frozenset(autotts.__all__) - frozenset(autotts._LAZY)
FORBIDDEN_CALLS = frozenset(
    {
        "eval",
        "exec",
        "compile",
        "open",
        "__import__",
        "globals",
        "locals",
        "vars",
        "getattr",
        "setattr",
        "delattr",
        "input",
        "breakpoint",
        "help",
        "memoryview",
        "exit",
        "quit",
    }
)
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "gi_frame",
        "gi_code",
        "cr_frame",
        "ag_frame",
        "f_back",
        "f_locals",
        "f_globals",
        "f_builtins",
        "f_code",
        "tb_frame",
        "tb_next",
        "func_globals",
    }
)
ALLOWED_DUNDERS = frozenset({"__init__", "__getitem__", "__len__", "__contains__", "__name__"})
MAX_BRANCHES = 64


def static_problems(source: str, filename: str = "candidate.py") -> list[str]:
    """Reasons the source may not run in the sandbox (empty when it passes)."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        return [f"{filename}:{exc.lineno}: syntax error: {exc.msg}"]
    problems: list[str] = []

    def bad(node: ast.AST, what: str) -> None:
        problems.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root not in SAFE_MODULES and alias.name != "autotts":
                    bad(node, f"import of {alias.name!r} is not allowed")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module == "autotts":
                for alias in node.names:
                    if alias.name not in AUTOTTS_NAMES:
                        bad(node, f"'from autotts import {alias.name}' is not allowed")
            elif module.split(".")[0] not in SAFE_MODULES or node.level:
                bad(node, f"import from {module or '.'!r} is not allowed")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_CALLS:
            bad(node, f"use of {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if attr in ("format", "format_map"):
                bad(node, "str.format can reach attributes from inside a string; use an f-string")
            elif attr in FORBIDDEN_ATTRIBUTES:
                bad(node, f"attribute {attr!r} is not allowed")
            elif attr.startswith("__") and attr.endswith("__"):
                if attr not in ALLOWED_DUNDERS:
                    bad(node, f"attribute {attr!r} is not allowed")
            elif attr.startswith("_") and not (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            ):
                bad(node, f"private attribute {attr!r} of another object is not allowed")
    return problems


@dataclass
class SandboxLimits:
    """Limits of one sandboxed evaluation (per worker process)."""

    wall_s: float = 120.0
    memory_mb: int = 2048
    cpu_s: int = 300
    episode_s: float = 5.0


@dataclass
class SandboxOutcome:
    """What came back: episode results per unit, or the reason the candidate was rejected."""

    ok: bool
    reason: str = ""
    results: list = field(default_factory=list)  # (config_index, env_id, question, EpisodeResult)
    params: list[dict] = field(default_factory=list)  # run() parameters of each config
    seconds: float = 0.0


def _limit_resources(limits: SandboxLimits):
    def apply() -> None:
        import resource

        os.setsid()
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _start_worker(job: dict, limits: SandboxLimits, workdir: str) -> subprocess.Popen:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    process = subprocess.Popen(
        [sys.executable, "-I", "-m", "autotts.discovery.sandbox_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=workdir,
        env=env,
        preexec_fn=_limit_resources(limits),
    )
    assert process.stdin is not None
    try:
        process.stdin.write(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
        process.stdin.close()
    except BrokenPipeError:
        pass
    process.stdin = None  # communicate() must not touch it again
    return process


def _collect(process: subprocess.Popen, deadline: float, limits: SandboxLimits) -> tuple:
    try:
        out, err = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(process)
        return None, f"wall-time limit exceeded ({limits.wall_s:g} s)"
    if process.returncode != 0:
        text = err.decode(errors="replace").strip().splitlines()
        tail = text[-1] if text else ""
        if process.returncode < 0:
            name = signal.Signals(-process.returncode).name
            if name == "SIGXCPU":
                return None, f"CPU-time limit exceeded ({limits.cpu_s} s)"
            return None, f"sandbox worker killed by {name} {tail}".strip()
        if "MemoryError" in tail:
            return None, f"memory limit exceeded ({limits.memory_mb} MB)"
        return None, f"sandbox worker failed: {tail or 'exit code ' + str(process.returncode)}"
    try:
        return json.loads(out), None
    except Exception as exc:
        return None, f"sandbox worker sent an unreadable reply ({type(exc).__name__})"


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()


def run_sandboxed(
    source: str,
    envs: dict,
    configs: list[tuple[float | None, dict]],
    seeds: int,
    *,
    workers: int = 2,
    trace_seeds: int = 1,
    limits: SandboxLimits | None = None,
    check_determinism: bool = True,
    static_check: bool = True,
) -> SandboxOutcome:
    """Run ``configs`` (β, overrides) of a candidate on gold-free environments.

    ``envs`` maps env id → list of :class:`~autotts.replay.ReplayQuestion` (no gold answers).
    Work is split by question across ``workers`` processes; with ``check_determinism`` every
    worker also replays the same small block, and their results must agree.
    ``static_check=False`` skips layer 1 (only to test the runtime layers on their own).
    """
    limits = limits or SandboxLimits()
    start = time.monotonic()
    problems = static_problems(source) if static_check else []
    if problems:
        return SandboxOutcome(False, "static check: " + "; ".join(problems[:5]))
    workers = max(1, workers)
    if check_determinism:
        workers = max(2, workers)
    shares: list[list[tuple[str, int]]] = [[] for _ in range(workers)]
    units = [(env_id, q) for env_id, questions in envs.items() for q in range(len(questions))]
    for n, unit in enumerate(units):
        shares[n % workers].append(unit)
    probe_unit = units[:1]
    deadline = start + limits.wall_s
    with tempfile.TemporaryDirectory(prefix="autotts-sandbox-") as workdir:
        processes = []
        for share in shares:
            job = {
                "source": source,
                "envs": {env_id: envs[env_id] for env_id in {e for e, _ in share + probe_unit}},
                "configs": configs,
                "units": share,
                "probe_units": probe_unit if check_determinism else [],
                "seeds": seeds,
                "trace_seeds": trace_seeds,
                "max_branches": MAX_BRANCHES,
                "episode_s": limits.episode_s,
            }
            processes.append(_start_worker(job, limits, workdir))
        replies = []
        failure = None
        for process in processes:
            if failure is not None:
                _kill(process)
                continue
            reply, failure = _collect(process, deadline, limits)
            replies.append(reply)
    if failure is not None:
        return SandboxOutcome(False, failure, seconds=time.monotonic() - start)
    for reply in replies:
        if reply.get("error"):
            return SandboxOutcome(False, reply["error"], seconds=time.monotonic() - start)
    if check_determinism:
        fingerprints = {reply["probe"] for reply in replies}
        if len(fingerprints) > 1:
            return SandboxOutcome(
                False,
                "non-deterministic: the same episodes gave different actions or answers in two "
                "processes (randomness, clocks or set iteration order?)",
                seconds=time.monotonic() - start,
            )
    from ..replay import EpisodeResult

    results = []
    for reply in replies:
        for (
            index,
            env_id,
            question,
            seed,
            answer,
            tokens,
            probe_tokens,
            opened,
            steps,
            error,
            reason,
            actions,
        ) in reply["results"]:
            result = EpisodeResult(
                question,
                seed,
                answer if isinstance(answer, str) else None,
                int(tokens),
                int(probe_tokens),
                int(opened),
                int(steps),
                str(reason),
                error,
                actions=None if actions is None else [tuple(a) for a in actions],
            )
            results.append((index, env_id, question, result))
    params = replies[0]["params"] if replies else []
    return SandboxOutcome(True, results=results, params=params, seconds=time.monotonic() - start)
