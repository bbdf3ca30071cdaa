"""Sandbox worker: ``python -s -m autotts.sandbox.worker PID_FD`` reads its job (a frame of
pickle, from the trusted parent) on stdin, then plays the candidate's episodes against the
parent's engine over stdin/stdout (:mod:`autotts.sandbox.protocol`).

The process started by the parent (the *supervisor*) imports everything the candidate may
use, enters new namespaces, and forks the *runner*, PID 1 of the new PID namespace. It writes
the runner's pid to ``PID_FD`` (so that the parent can watch the runner's CPU time) and closes
it. The runner locks itself down (:func:`autotts.sandbox.isolation.lock_down`), tells the
supervisor over a private pipe that it is confined, and only then loads the candidate. The
supervisor runs no untrusted code: it waits for the runner and turns how it ended into an exit
code the runner cannot forge (``EXIT_*`` in :mod:`autotts.sandbox.protocol`).

The job holds no store data: the episodes' public headers only (:mod:`.remote`).

``--probe`` runs the same isolation and then tries what it must forbid (fork, exec, files,
sockets, signals, clocks, randomness), replying ``{"problems": [...]}``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import pickle
import random
import signal
import sys
import time

from ..loading.controller_files import ControllerLoadError, controller_class_from_source
from . import isolation
from .protocol import EXIT_CPU, EXIT_FAILED, EXIT_ISOLATION
from .remote import Channel, play_remote
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
        "webbrowser.", "code.", "pickle.",
    )  # fmt: skip

    def hook(event: str, args: tuple) -> None:
        if event == "open" or event.startswith(blocked):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and str(args[0]).split(".")[0] not in allowed:
            raise PermissionError(f"sandbox: import of {args[0]!r} is not allowed")

    sys.addaudithook(hook)


def _supervise(pid: int, ready_fd: int, cpu_s: float) -> int:
    """Wait for the runner; the exit code says how it ended."""
    _, status, usage = os.wait4(pid, 0)
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


def _preload_common() -> None:
    """Import what every candidate may use (once locked down, no file can be read); before the
    job arrives, so that a started spare worker has done it already."""
    for name in sorted(SAFE_MODULES):
        __import__(name)
    import greenlet  # noqa: F401

    import autotts.core.contract  # noqa: F401
    import autotts.core.voting  # noqa: F401
    import autotts.loading.autotts_paper_api  # noqa: F401 (AutoTTS-API method files)


def _preload(source: str = "") -> None:
    """Import the rest of what this candidate may use: numpy/scipy only when the source
    imports them (each ``from X import y`` that names a submodule imports it too); their
    thread pools stay at one thread, as no thread can be started once locked down (after
    :func:`_preload_common`)."""
    numeric = numeric_imports(source)
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    for name in numeric:
        with contextlib.suppress(ImportError):  # 'from numpy import pi' names no module
            importlib.import_module(name)
    import autotts.loading.autotts_paper_api

    for name in REFERENCE_HELPERS:  # `from controller_api import LLMDesignedMethod`
        if name in source:
            sys.modules.setdefault(name, autotts.loading.autotts_paper_api)
    random.seed(0)  # module-level generators: seeded alike in every worker
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(0)


def _run_job(job: dict, channel: Channel) -> None:
    try:
        cls = controller_class_from_source(
            job["source"], "candidate.py", job.get("class_name"), in_sandbox=True
        )
        controller = cls()
        params = [controller.params(beta, **overrides) for beta, overrides in job["configs"]]
        header = json.dumps(params, separators=(",", ":"), default=repr, allow_nan=False)
    except ControllerLoadError as exc:
        channel.send(b"E" + json.dumps(f"does not load: {exc}"[:1000]).encode())
        return
    except Exception as exc:
        message = f"schedule/params failed: {type(exc).__name__}: {exc}"[:1000]
        channel.send(b"E" + json.dumps(message).encode())
        return
    channel.send(b"P" + header.encode("ascii"))
    play_remote(controller, params, job["headers"], job["units"], job["in_flight"], channel)


def _self_test(clock_pages: list[tuple[int, int]]) -> list[str]:
    """Try what isolation must forbid; every attempt has to fail."""
    _socket = sys.modules["_socket"]  # imported before the lock-down
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

    def clock_page_mapped():  # madvise fails with ENOMEM on an unmapped range
        for low, high in clock_pages:
            if libc.madvise(low, high - low, 0) == 0:
                return True
        raise OSError("unmapped")

    attempts = {
        "fork": os.fork,
        "exec": lambda: os.execv("/bin/sh", ["sh", "-c", "true"]),
        "listing /": lambda: os.listdir("/"),
        "reading this program": lambda: open(__file__, "rb").close(),
        "writing the working directory": lambda: open("probe-file", "wb").close(),
        "opening a socket": lambda: _socket.socket().close(),
        "signalling the supervisor": lambda: os.kill(os.getppid() or 1, 0),
        "reading the clock": time.time,
        "reading the monotonic clock": time.monotonic,
        "reading random bytes": lambda: os.urandom(8),
        "setting a CPU timer": lambda: signal.setitimer(signal.ITIMER_PROF, 1.0),
        "installing a signal handler": lambda: signal.signal(signal.SIGPROF, print),
        "reading the kernel's clock page": clock_page_mapped,
        "mapping executable memory": lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_EXEC),
        "reading a pipe's timestamps": lambda: os.fstat(0),
        "creating a pipe": os.pipe,
        "duplicating a descriptor": lambda: os.dup(0),
        "reading the working directory": os.getcwd,
        "making a pipe non-blocking": lambda: fcntl.fcntl(2, fcntl.F_SETFL, os.O_NONBLOCK),
    }
    problems = []
    for what, attempt in attempts.items():
        try:
            child = attempt()
        except (OSError, NotImplementedError):
            continue
        if what == "fork" and child == 0:
            os._exit(0)
        problems.append(f"{what} is not blocked")
    return problems


def main() -> None:
    probe = "--probe" in sys.argv[1:]
    _preload_common()  # (before the job: a spare has done it when its job comes)
    channel = Channel(0, 1)
    if probe:
        import _socket  # noqa: F401 (for the self-test, which can import nothing)
        import mmap  # noqa: F401

        clock_pages = isolation.clock_pages()

        job, pid_fd = {"isolate": True, "memory_mb": 512, "cpu_s": 10}, None
    else:
        job, pid_fd = pickle.loads(channel.receive()), int(sys.argv[1])
    with contextlib.suppress(OSError):  # a bigger pipe: fewer wake-ups of the parent
        fcntl.fcntl(1, F_SETPIPE_SZ, 1 << 20)
    sys.stdout = sys.stderr  # a candidate's print() must not corrupt the protocol
    _preload("" if probe else job["source"])
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
        if pid_fd is not None:
            os.write(pid_fd, b"%d" % pid)
            os.close(pid_fd)
        sys.exit(_supervise(pid, ready_read, job["cpu_s"]))
    os.close(ready_read)
    try:
        if job["isolate"]:
            isolation.lock_down(job["memory_mb"], job["cpu_s"], keep_fd=ready_write)
        else:
            if pid_fd is not None:
                os.close(pid_fd)
            isolation.set_limits(job["memory_mb"], job["cpu_s"])
        os.write(ready_write, b"1")
        os.close(ready_write)
    except BaseException as exc:
        sys.stderr.write(f"isolation: {exc}\n")
        sys.stderr.flush()
        os._exit(1)
    del sys.argv[1:], sys.orig_argv[-1:]  # the worker's arguments are none of the candidate's
    # ---- untrusted code may run from here on ----
    if probe:
        os.write(1, json.dumps({"problems": _self_test(clock_pages)}).encode() + b"\n")
    else:
        if job["audit_hook"]:
            _install_audit_hook()
        _run_job(job, channel)
    os._exit(0)


if __name__ == "__main__":
    main()
