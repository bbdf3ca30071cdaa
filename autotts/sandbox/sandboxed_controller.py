"""Untrusted controllers on any episode engine, one episode at a time: live episodes (``autotts
validate``, ``autotts serve``), or any engine :func:`~autotts.core.engine.play` drives.

A :class:`SandboxedController` is the :class:`~autotts.core.contract.RemoteController` of an
untrusted file: :func:`~autotts.core.engine.play` hands it the episode's engine, and each
episode is played by a fresh isolated worker (:mod:`.worker`) over the sandbox protocol, with
this process as the engine (:class:`~autotts.sandbox.serving.EpisodeServer`), exactly as the
batched replay evaluation plays it (:func:`~autotts.sandbox.runner.run_sandboxed`). The worker
receives the episode's public header and then only what its actions reveal; its schedule, its
parameters and the β contract are computed inside it. A fresh process per episode keeps
episodes apart (nothing one request paid for reaches another's), and a started spare hides the
interpreter's start-up.

A worker's time waiting on a live engine is not its own (:meth:`LimitWatch.parent_busy`): its
CPU budget and idle allowance bound what it does, whatever the engine's speed. An engine that
says it is ``abandoned`` (a served request whose client left) ends its worker at once.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from pathlib import Path

from ..core.contract import RemoteController
from ..core.engine import DEFAULT_MAX_STEPS, EpisodeResult, finish_result
from ..loading.controller_files import (
    ControllerLoadError,
    is_marked_untrusted,
    load_controller,
    resolve_controller_path,
    split_selector,
)
from .limits import EPISODE_LIMITS, SandboxLimits
from .processes import WorkerProcess, drive, require_isolation
from .remote import header_of
from .serving import EpisodeServer
from .static import static_problems


class SandboxedController(RemoteController):
    """An untrusted controller (its ``source``, never imported in this process) that plays
    each episode in a fresh isolated worker. ``name`` labels it in tables and replies;
    ``class_name`` picks one class of a file that defines several. ``isolate=False`` runs the
    workers without OS isolation (only for code you trust); ``static_check=False`` and
    ``audit_hook=False`` switch off the Python-level layers (to test the OS layer). A file
    that the static check refuses raises
    :class:`~autotts.loading.controller_files.ControllerLoadError`; a machine that cannot
    isolate raises :class:`~autotts.sandbox.processes.IsolationUnavailable`.

    An episode the sandbox ends (a limit, a malformed reply, a worker that cannot start) fails
    with ``result.error`` starting ``"sandbox: "``, its tokens those the engine spent until
    then. Call :meth:`close` (or use it as a context manager) to end the spare worker."""

    description = "LLM-written; each episode runs in the sandbox"

    def __init__(
        self,
        source: str,
        name: str,
        *,
        class_name: str | None = None,
        limits: SandboxLimits | None = None,
        isolate: bool = True,
        audit_hook: bool = True,
        static_check: bool = True,
    ):
        problems = static_problems(source) if static_check else []
        if problems:
            raise ControllerLoadError(f"{name}: static check: {'; '.join(problems[:5])}")
        if isolate:
            require_isolation()
        self.source, self.name, self.class_name = source, name, class_name
        self.limits = limits or EPISODE_LIMITS
        self.isolate, self.audit_hook = isolate, audit_hook
        self._workdir = tempfile.TemporaryDirectory(prefix="autotts-episodes-")
        self._lock = threading.Lock()
        self._spare: WorkerProcess | None = None
        self._closed = False
        self.last_params: dict | None = None  # the run() parameters a worker reported last

    @classmethod
    def from_file(cls, target: str | Path, **kwargs) -> SandboxedController:
        """The controller of a file (``file.py`` or ``file.py:Class``), read as text."""
        file, class_name = resolve_controller_path(target), split_selector(target)[1]
        try:
            source = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ControllerLoadError(f"{file}: cannot read it: {exc}") from None
        kwargs.setdefault("class_name", class_name)
        return cls(source, kwargs.pop("name", None) or file.stem, **kwargs)

    def _worker(self) -> WorkerProcess:
        """A started worker (the spare, if there is one), and a new spare starting."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: the sandboxed controller is closed")
            worker, self._spare = self._spare, None
            spare = WorkerProcess(self.limits)
            try:
                spare.start(self._workdir.name)
                self._spare = spare
            except OSError:  # (no spare then; the episode's own worker says why, if it fails)
                spare.kill()
        if worker is None:
            worker = WorkerProcess(self.limits)
            worker.start(self._workdir.name)
        return worker

    def play_episode(self, episode, params: dict, result: EpisodeResult, max_steps: int):
        """Play one episode on ``episode`` (the engine) in a fresh worker (see the class)."""
        played: list[EpisodeResult] = []
        server = EpisodeServer(
            [(_Given(episode), result.question, result.seed)],
            1,
            min(max_steps, DEFAULT_MAX_STEPS),
            traced=lambda _: True,
            done=lambda _, ended: played.append(ended),
            slow=True,
        )
        job = {
            "source": self.source,
            "class_name": self.class_name,
            "configs": [(params["beta"], params["overrides"])],
            "headers": [header_of(episode.state)],
            "units": [(0, 0)],
            "in_flight": 1,
            "cpu_s": self.limits.cpu_s,
            "memory_mb": self.limits.memory_mb,
            "isolate": self.isolate,
            "audit_hook": self.audit_hook,
        }

        def abandoned() -> str | None:  # (a served request whose client left)
            if getattr(episode, "abandoned", False):
                return "the episode was abandoned (its client left)"
            return None

        worker = None
        try:
            worker = self._worker()
            drive([worker], [(job, server)], self.limits, self._workdir.name, stop=abandoned,
                  collect_on_clock=False)  # fmt: skip
        except Exception as exc:  # the candidate's fault (Rejected) or the machine's
            if worker is not None:
                worker.kill()
            steps = [e.counter.steps for group in server.groups for e in group if e.counter]
            result.answer, result.error = None, f"sandbox: {exc}"
            finish_result(episode, result, steps[0] if steps else 0)
            return []
        if worker.params:
            self.last_params = worker.params[0]
        (ended,) = played
        for name in ("answer", "reason", "error", "tokens", "probe_tokens", "opened", "steps",
                     "cost", "model_tokens"):  # fmt: skip
            setattr(result, name, getattr(ended, name))
        result.trace_cache = getattr(episode, "trace", None)
        return ended.actions or []

    def close(self) -> None:
        """End the spare worker and remove the working directory (episodes still playing end
        as they would; no new one starts)."""
        with self._lock:
            spare, self._spare, self._closed = self._spare, None, True
        if spare is not None:
            spare.kill()
        with contextlib.suppress(OSError):
            self._workdir.cleanup()

    def __enter__(self) -> SandboxedController:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_controller(target: str | Path, *, sandbox: bool | None = None, **kwargs):
    """The controller ``target`` names, trust decided before anything loads: a file marked as
    LLM-written (or any file, with ``sandbox=True``) becomes a :class:`SandboxedController`
    (read as text, never imported here; ``kwargs`` go to it); anything else is imported
    (:func:`~autotts.loading.controller_files.load_controller`)."""
    if sandbox or (sandbox is None and is_marked_untrusted(target)):
        if resolve_controller_path(target).suffix != ".py":
            raise ControllerLoadError(
                f"{target}: only Python controller files run sandboxed episodes"
            )
        return SandboxedController.from_file(target, **kwargs)
    return load_controller(target)


class _Given:
    """An episode source that hands over an engine already made."""

    def __init__(self, engine):
        self.engine = engine

    def episode_source(self, question: int, seed: int) -> tuple:
        return (lambda: self.engine,)


__all__ = ["EPISODE_LIMITS", "SandboxedController", "open_controller"]
