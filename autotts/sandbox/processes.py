"""The sandbox's worker processes, seen from the parent: how to start one (its job holds no
store data, only public episode headers), exchange frames with it over non-blocking pipes with
bounded buffers, serve its rounds on the parent's engine (:mod:`.serving`), hold it to its
limits, turn how it ended into a reason, and kill every process it made. :func:`drive` runs a
set of them to the end; :mod:`.runner` decides what they run and what their results mean.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import json
import marshal
import os
import pickle
import selectors
import signal
import subprocess
import sys
import tempfile
import termios
import time

from ..errors import RunFailure
from .limits import LimitWatch, Rejected, SandboxLimits
from .protocol import (
    EXIT_CPU,
    EXIT_ISOLATION,
    MAX_FRAME_BYTES,
    MAX_HEADER_BYTES,
    MAX_TEXT_CHARS,
    ProtocolError,
    frame,
    strict_json,
)


class IsolationUnavailable(RunFailure):
    """This machine cannot contain untrusted code (the message says what is missing)."""


@functools.cache
def isolation_problems() -> tuple[str, ...]:
    """What keeps this machine from isolating a worker (empty: nothing), by a real worker."""
    try:
        process = subprocess.run(
            _worker_command("--probe"),
            capture_output=True,
            timeout=60,
            env=_worker_environment(),
            cwd=tempfile.gettempdir(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return (f"the isolation probe could not run: {exc}",)
    if process.returncode != 0:
        tail = process.stderr.decode(errors="replace").strip().splitlines()
        return (tail[-1] if tail else f"the isolation probe exited with {process.returncode}",)
    try:
        return tuple(json.loads(process.stdout)["problems"])
    except Exception:
        return ("the isolation probe gave no readable answer",)


def require_isolation() -> None:
    """Raise :class:`IsolationUnavailable` unless untrusted code can be contained here."""
    problems = isolation_problems()
    if problems:
        raise IsolationUnavailable(
            "untrusted controller code needs operating-system isolation, which this machine "
            f"does not provide: {'; '.join(problems)}. Run it on Linux ≥ 5.13 with user "
            "namespaces, Landlock and libseccomp (root, or unprivileged user namespaces "
            "allowed), or turn isolation off to run it without containment (only for code "
            "you trust)."
        )


def _worker_environment() -> dict[str, str]:
    # a fixed hash secret; no rseq area (the kernel writes the CPU's number there, in memory)
    rseq = {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", **rseq}


ADDR_NO_RANDOMIZE = 0x0040000

# A worker's first program: address randomisation off for itself and what it executes (the flag
# survives exec), the pid pipe moved to descriptor 3 (the parent's number differs between runs),
# then the worker; set here, not between fork and exec (a slow full fork of a big parent).
LAUNCHER = (
    "import ctypes, os, sys\n"
    f"ctypes.CDLL(None).personality({ADDR_NO_RANDOMIZE})\n"
    "if sys.argv[-1].isdigit() and sys.argv[-1] != '3':\n"
    "    fd = int(sys.argv[-1]); os.dup2(fd, 3); os.close(fd); sys.argv[-1] = '3'\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
)


def _worker_command(*args: str) -> list[str]:
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    worker = ["-s", *safe_path, "-m", "autotts.sandbox.worker", *args]
    return [sys.executable, "-s", *safe_path, "-c", LAUNCHER, *worker]


MAX_OUTBOX_BYTES = 64 << 20  # answers the worker has not read yet


class WorkerProcess:
    """One worker process: its job, its frames, the parent's engine serving them (``server``,
    an :class:`~autotts.sandbox.serving.EpisodeServer`), and its limits."""

    def __init__(self, limits: SandboxLimits):
        self.limits = limits
        self.process: subprocess.Popen | None = None
        self.server = None
        self.pending, self.outbox = bytearray(), bytearray()
        self.write_waiting = False  # (drive) its stdin is watched until the outbox is out
        self.received, self.stderr = 0, b""
        self.params = None
        self.pid_fd: int | None = None
        self.watch = LimitWatch(limits, self._owes)

    def start(self, workdir: str) -> None:
        """Start the worker (:class:`RunFailure` where the machine cannot: not the candidate's)."""
        try:
            read_fd, write_fd = os.pipe()
            try:
                self.process = subprocess.Popen(
                    _worker_command(str(write_fd)),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=workdir,
                    env=_worker_environment(),
                    start_new_session=True,
                    pass_fds=(write_fd,),
                )
            except BaseException:
                os.close(read_fd)
                raise
            finally:
                os.close(write_fd)
        except OSError as exc:
            message = "free file descriptors or processes (ulimit -n, -u), or use fewer workers"
            raise RunFailure(f"could not start a sandbox worker ({exc}); {message}") from exc
        self.pid_fd = read_fd
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            os.set_blocking(stream.fileno(), False)

    def send(self, job: dict, server) -> None:
        """Queue the worker's job; ``server`` will serve its rounds."""
        self.server = server
        self.outbox += frame(pickle.dumps(job, protocol=5))

    def read_pid(self) -> None:
        data = os.read(self.pid_fd, 32)
        os.close(self.pid_fd)
        self.pid_fd = None
        if data.isdigit():
            self.watch.runner_started(int(data))

    def flush(self) -> bool:
        """Write what the worker is owed, as far as its pipe takes it; whether all is out."""
        if self.outbox:
            try:
                written = os.write(self.process.stdin.fileno(), self.outbox)
            except BlockingIOError:
                return False
            except (BrokenPipeError, OSError):
                self.outbox.clear()
                return True
            del self.outbox[:written]
        return not self.outbox

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limits.reply_mb << 20:
            raise Rejected(f"the reply exceeds {self.limits.reply_mb} MB")
        pending = self.pending
        if not pending and self.params is not None and len(chunk) >= 4:
            size = int.from_bytes(chunk[:4], "big")
            if size == len(chunk) - 4 and size <= MAX_FRAME_BYTES:  # one whole frame: no copy
                return self._frame(chunk[4:])
        pending += chunk
        while len(pending) >= 4:
            size = int.from_bytes(pending[:4], "big")
            limit = MAX_HEADER_BYTES if self.params is None else MAX_FRAME_BYTES
            if size > limit:
                raise Rejected(f"malformed reply: a frame of {size:,} bytes (at most {limit:,})")
            if len(pending) < 4 + size:
                break
            payload = bytes(pending[4 : 4 + size])
            del pending[: 4 + size]
            self._frame(payload)

    def _frame(self, payload: bytes) -> None:
        try:
            if self.params is None:
                return self._header(payload)
            self.watch.round_received()
            if self.server.slow:  # a live engine: its generation time is not the worker's
                self.watch.parent_busy()
                try:
                    observations = self.server.serve(payload)
                finally:
                    self.watch.parent_done()
            else:
                observations = self.server.serve(payload)
        except ProtocolError as exc:
            raise Rejected(f"malformed reply: {exc}") from None
        answer = marshal.dumps(observations)
        self.outbox += len(answer).to_bytes(4, "big")
        self.outbox += answer
        if len(self.outbox) > MAX_OUTBOX_BYTES:
            raise Rejected("the worker does not read the parent's answers")

    def _owes(self, blocked: str) -> bool:
        """Whether the worker, ``blocked`` (``"read"`` or ``"write"``), waits on the parent:
        reading, while an answer is not written out and its stdin pipe is empty (else it does
        not read that pipe), or a frame it wrote is unread; writing, while its pipe is unread."""
        if blocked == "read" and (self.outbox or self.server is None):
            return _unread(self.process.stdin) == 0
        return _unread(self.process.stdout) > 0

    def _header(self, payload: bytes) -> None:
        tag, message = payload[:1], strict_json(payload[1:])
        if tag == b"E":
            if type(message) is not str:
                raise Rejected("malformed reply: the load error is not a string")
            raise Rejected(message[:MAX_TEXT_CHARS])
        if tag != b"P":
            raise Rejected("malformed reply: it does not start with the parameters")
        if type(message) is not list or not all(type(p) is dict for p in message):
            raise Rejected("malformed reply: parameters must be a list of objects")
        self.params = message

    def finish(self) -> None:
        """After the worker exited: how it ended, and whether it owed anything."""
        code = self.process.returncode
        last = (self.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1][:500]
        if code == EXIT_ISOLATION:
            raise IsolationUnavailable(f"a sandbox worker could not isolate itself: {last}")
        if code == EXIT_CPU:
            raise Rejected(f"CPU-time limit exceeded ({self.limits.cpu_s:g} s of CPU)")
        if code > 128:
            try:
                name = signal.Signals(code - 128).name
            except ValueError:
                name = f"signal {code - 128}"
            raise Rejected(f"sandbox worker killed by {name}")
        if code != 0:
            if "MemoryError" in last:
                raise Rejected(f"memory limit exceeded ({self.limits.memory_mb} MB)")
            raise Rejected(f"sandbox worker failed: {last or f'exit code {code}'}")
        if self.pending:
            raise Rejected("malformed reply: the last frame is incomplete")
        if self.params is None or not self.server.finished:
            raise Rejected("malformed reply: the worker ended before its last episode")

    def kill(self) -> None:
        """Kill every process of the worker's session (the supervisor, and the runner: PID 1 of
        its PID namespace), close its pipes, wait until none is left; let its server go."""
        self.server = None
        if self.pid_fd is not None:
            os.close(self.pid_fd)
            self.pid_fd = None
        if self.process is None:
            return
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            with contextlib.suppress(OSError):
                stream.close()
        for _ in range(200):
            try:
                os.killpg(group, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.01)


def _unread(pipe) -> int:
    """Bytes in ``pipe`` not read yet (either end; 0 once it is closed)."""
    try:
        unread = fcntl.ioctl(pipe.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int.from_bytes(unread, sys.byteorder)


def drive(
    workers: list[WorkerProcess],
    jobs: list[tuple[dict, object]],
    limits: SandboxLimits,
    workdir: str,
    then=None,
    stop=None,
    collect_on_clock: bool = True,
) -> None:
    """Run the workers to the end (starting those not started yet): send each its job, serve
    its rounds, read what it writes with bounded buffers; every process is killed on the way
    out. ``jobs``: ``(job, server)`` pairs. ``then(worker)``, called as each ends well, may
    return more ``(worker, (job, server))`` pairs. ``stop()``, asked a few times a second,
    ends them all with the reason it returns (``None``: go on). The backstop does not count
    time spent serving slow rounds. ``collect_on_clock``: the cyclic garbage collector runs
    on a clock, not by allocations (it is the process's: only where nothing else runs)."""
    deadline = time.monotonic() + limits.backstop_s
    selector = selectors.DefaultSelector()
    running: dict[WorkerProcess, int] = {}  # open output streams per worker
    everyone: list[WorkerProcess] = []

    def launch(pairs) -> None:
        pairs = list(pairs)
        for worker, _ in pairs:  # all start at once; each imports while the others do
            if worker not in everyone:  # killed on the way out, even if a later start fails
                everyone.append(worker)
            if worker.process is None:
                worker.start(workdir)
        for worker, (job, server) in pairs:
            worker.send(job, server)
            selector.register(worker.process.stdout, selectors.EVENT_READ, (worker, "out"))
            selector.register(worker.process.stderr, selectors.EVENT_READ, (worker, "err"))
            if worker.pid_fd is not None:
                selector.register(worker.pid_fd, selectors.EVENT_READ, (worker, "pid"))
            writable(worker)
            running[worker] = 2

    def writable(worker: WorkerProcess) -> None:
        if worker.flush():
            if worker.write_waiting:
                selector.unregister(worker.process.stdin)
                worker.write_waiting = False
        elif not worker.write_waiting:
            selector.register(worker.process.stdin, selectors.EVENT_WRITE, (worker, "in"))
            worker.write_waiting = True

    collecting = collect_on_clock and gc.isenabled()
    if collecting:  # per allocation, it cost 1/8 of the parent's time
        gc.disable()
    try:
        launch(zip(workers, jobs, strict=True))
        last_check = time.monotonic()
        while running:
            now = time.monotonic()
            if now > deadline and now > deadline + max(w.watch.parent_seconds for w in running):
                raise Rejected(f"wall-time backstop exceeded ({limits.backstop_s:g} s)")
            if now - last_check >= 0.25:
                last_check = now
                reason = stop() if stop is not None else None
                if reason:
                    raise Rejected(reason)
                if collecting:
                    gc.collect(1)
                for worker in running:
                    worker.watch.check(now)
            for key, _ in selector.select(timeout=0.25):
                worker, kind = key.data
                if kind == "in":
                    writable(worker)
                    continue
                if kind == "pid":
                    selector.unregister(key.fileobj)
                    worker.read_pid()
                    continue
                chunk = os.read(key.fd, 64 << 10)  # (reading 1 MB costs an mmap each)
                if chunk:
                    if kind == "err":
                        worker.stderr = (worker.stderr + chunk)[-4096:]
                    else:
                        worker.feed(chunk)
                        if worker.outbox:
                            writable(worker)
                    continue
                selector.unregister(key.fileobj)
                running[worker] -= 1
                if running[worker]:
                    continue
                del running[worker]
                if worker.write_waiting:
                    selector.unregister(worker.process.stdin)
                    worker.write_waiting = False
                try:
                    worker.process.wait(
                        timeout=max(0.1, deadline + worker.watch.parent_seconds - time.monotonic())
                    )
                except subprocess.TimeoutExpired:
                    raise Rejected(
                        f"wall-time backstop exceeded ({limits.backstop_s:g} s)"
                    ) from None
                worker.finish()
                if then is not None:
                    launch(then(worker))
    finally:
        if collecting:
            gc.enable()
        selector.close()
        for worker in everyone:
            worker.kill()
