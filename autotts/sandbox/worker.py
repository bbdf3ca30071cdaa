"""Sandbox worker: ``python -I -m autotts.sandbox.worker`` reads one pickled job (from the
trusted parent) on stdin and writes the reply lines of :mod:`autotts.sandbox.protocol` on
stdout.

The process started by the parent (the *supervisor*) imports everything the candidate may
use, enters new namespaces, and forks the *runner*, PID 1 of the new PID namespace. The runner
locks itself down (:func:`autotts.sandbox.isolation.lock_down`), tells the supervisor over a
private pipe that it is confined, and only then loads the candidate. The supervisor runs no
untrusted code: it watches the runner's CPU time, kills it when it stops using CPU for
``idle_s`` seconds, and turns how it ended into an exit code the runner cannot forge
(``EXIT_*`` in :mod:`autotts.sandbox.protocol`).

``--probe`` runs the same isolation and then tries what it must forbid (fork, exec, files,
sockets, signals), replying ``{"problems": [...]}``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import io
import json
import os
import pickle
import signal
import sys
import time

from ..episodes import play_episodes
from ..loader import ControllerLoadError, controller_class_from_source
from ..replay import ReplayEnvironment
from . import isolation
from .protocol import EXIT_CPU, EXIT_FAILED, EXIT_IDLE, EXIT_ISOLATION, encode_unit
from .static import IMPORTABLE, REFERENCE_HELPERS, SAFE_MODULES, numeric_imports

F_SETPIPE_SZ = 1031  # Linux


def _install_audit_hook() -> None:
    """A convenience layer on top of the OS boundary: refuses, with a readable message, the
    imports and calls the static check would have refused."""
    allowed = IMPORTABLE | {"autotts", "encodings"}
    blocked = (
        "socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
        "os.fork", "os.kill", "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.listdir",
        "os.scandir", "os.chdir", "shutil.", "ctypes.", "gc.", "sys._getframe",
        "sys._current_frames", "sys.settrace", "sys.setprofile", "urllib.", "http.",
        "webbrowser.", "code.", "marshal.", "pickle.",
    )  # fmt: skip

    def hook(event: str, args: tuple) -> None:
        if event == "open" or event.startswith(blocked):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and str(args[0]).split(".")[0] not in allowed:
            raise PermissionError(f"sandbox: import of {args[0]!r} is not allowed")

    sys.addaudithook(hook)


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _supervise(pid: int, ready_fd: int, cpu_s: float, idle_s: float) -> int:
    """Wait for the runner; the exit code says how it ended."""
    last_cpu, last_change = None, time.monotonic()
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        cpu, now = _cpu_seconds(pid), time.monotonic()
        if cpu != last_cpu:
            last_cpu, last_change = cpu, now
        elif now - last_change > idle_s:
            os.kill(pid, signal.SIGKILL)
            os.wait4(pid, 0)
            return EXIT_IDLE
        time.sleep(0.2)
    os.set_blocking(ready_fd, False)
    try:
        ready = os.read(ready_fd, 1) == b"1"
    except BlockingIOError:
        ready = False
    if not ready:
        return EXIT_ISOLATION
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        used = usage.ru_utime + usage.ru_stime
        if sig in (signal.SIGKILL, signal.SIGXCPU) and used >= cpu_s - 0.5:
            return EXIT_CPU
        return 128 + sig
    return 0 if os.WEXITSTATUS(status) == 0 else EXIT_FAILED


def _preload(source: str = "") -> None:
    """Import every module a candidate may use: once locked down, no file can be read.
    numpy/scipy only when the source imports them (each ``from X import y`` that names a
    submodule imports it too); their thread pools stay at one thread, as no thread can be
    started once locked down."""
    for name in sorted(SAFE_MODULES):
        __import__(name)
    numeric = numeric_imports(source)
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    for name in numeric:
        with contextlib.suppress(ImportError):  # 'from numpy import pi' names no module
            importlib.import_module(name)
    import greenlet  # noqa: F401

    import autotts.autotts_api  # (AutoTTS-API method files)

    for name in REFERENCE_HELPERS:  # `from controller_api import LLMDesignedMethod`
        if name in source:
            sys.modules.setdefault(name, autotts.autotts_api)
    import autotts.contract  # noqa: F401
    import autotts.voting  # noqa: F401


def _run_job(job: dict, out) -> None:
    envs = job["envs"]
    try:
        cls = controller_class_from_source(job["source"], "candidate.py", job.get("class_name"))
        controller = cls()
        params = [controller.params(beta, **overrides) for beta, overrides in job["configs"]]
        header = json.dumps(params, separators=(",", ":"), default=repr, allow_nan=False)
    except ControllerLoadError as exc:
        out.write(b"E\t" + json.dumps(f"does not load: {exc}"[:1000]).encode() + b"\n")
        return
    except Exception as exc:
        message = f"schedule/params failed: {type(exc).__name__}: {exc}"[:1000]
        out.write(b"E\t" + json.dumps(message).encode() + b"\n")
        return
    out.write(b"P\t" + header.encode("ascii") + b"\n")
    wide = job["wide"]
    episodes = ((envs[e], params[i], question, seed) for i, e, question, seed in job["units"])
    results = play_episodes(controller, episodes, time_limit_s=job["episode_cpu_s"])
    for n, result in enumerate(results):
        out.write(b"%d\t" % n + encode_unit(result, wide) + b"\n")


def _self_test() -> list[str]:
    """Try what isolation must forbid; every attempt has to fail."""
    import _socket

    attempts = {
        "fork": os.fork,
        "exec": lambda: os.execv("/bin/sh", ["sh", "-c", "true"]),
        "listing /": lambda: os.listdir("/"),
        "reading this program": lambda: open(__file__, "rb").close(),
        "writing the working directory": lambda: open("probe-file", "wb").close(),
        "opening a socket": lambda: _socket.socket().close(),
        "signalling the supervisor": lambda: os.kill(os.getppid() or 1, 0),
    }
    problems = []
    for what, attempt in attempts.items():
        try:
            child = attempt()
        except OSError:
            continue
        if what == "fork" and child == 0:
            os._exit(0)
        problems.append(f"{what} is not blocked")
    return problems


def main() -> None:
    probe = "--probe" in sys.argv[1:]
    if probe:
        job = {"isolate": True, "memory_mb": 512, "cpu_s": 10, "idle_s": 10}
    else:
        job = pickle.loads(sys.stdin.buffer.read())
    with contextlib.suppress(OSError):  # a bigger pipe: fewer wake-ups of the parent
        fcntl.fcntl(1, F_SETPIPE_SZ, 1 << 20)
    out = io.BufferedWriter(io.FileIO(1, "wb", closefd=False), buffer_size=1 << 18)
    sys.stdout = io.StringIO()  # a candidate's print() must not corrupt the reply
    _preload("" if probe else job["source"])
    if not probe:
        job["envs"] = {
            env_id: ReplayEnvironment.without_gold(
                env_id, questions, branch_limit=job["max_branches"], max_steps=job["max_steps"]
            )
            for env_id, questions in job["envs"].items()
        }
    ready_read, ready_write = os.pipe()
    try:
        if job["isolate"]:
            isolation.enter_namespaces()
    except (isolation.IsolationError, OSError) as exc:
        sys.stderr.write(f"isolation: {exc}\n")
        sys.exit(EXIT_ISOLATION)
    pid = os.fork()
    if pid:
        os.close(ready_write)
        sys.exit(_supervise(pid, ready_read, job["cpu_s"], job["idle_s"]))
    os.close(ready_read)
    try:
        if job["isolate"]:
            isolation.lock_down(job["memory_mb"], job["cpu_s"], keep_fd=ready_write)
        else:
            isolation.set_limits(job["memory_mb"], job["cpu_s"])
        os.write(ready_write, b"1")
        os.close(ready_write)
    except BaseException as exc:
        sys.stderr.write(f"isolation: {exc}\n")
        sys.stderr.flush()
        os._exit(1)
    # ---- untrusted code may run from here on ----
    if probe:
        out.write(json.dumps({"problems": _self_test()}).encode() + b"\n")
    else:
        if job["audit_hook"]:
            _install_audit_hook()
        _run_job(job, out)
    out.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
