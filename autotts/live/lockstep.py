"""Episodes played side by side, their steps merged into shared engine batches.

Within one episode, a step's branches already go to the engine as one batch. A controller
that asks for one branch at a time — every AutoTTS-API method file, whose ``solve`` waits for
the answer of each ``probe_new()``/``probe_more(i)`` — gains nothing from that. Several
*episodes* (questions, seeds) in flight do: :func:`play_in_lockstep` plays up to ``k``
episodes in threads, and :class:`LockstepBackend` holds each one's generation call until every
episode in flight is waiting for one, then sends them all to the engine as one batch. Every
request keeps its own seed, so results are the episodes' own, whatever they were batched with;
and failures too: a request the backend refuses fails its own episode only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from ..core.contract import Controller
from ..core.engine import EpisodeResult
from ..core.episodes import play_episodes
from .backend import BatchFailure, Generation, GenerationBackend, GenerationRequest


class LockstepBackend(GenerationBackend):
    """A backend shared by episodes in flight: their calls to :meth:`generate` are merged
    into one call of ``inner`` once every episode in flight (:meth:`episode`) is waiting.
    Each call gets its own outcome: where ``inner`` reports which requests failed
    (:class:`~autotts.live.backend.BatchFailure`), the calls holding them fail; where it fails
    a merged batch as a whole (with any exception), each call is sent again alone, so that a
    request the backend refuses fails its own episode, not its batch's."""

    def __init__(self, inner: GenerationBackend):
        super().__init__()
        self.inner = inner
        self.name, self.model, self.max_model_len = inner.name, inner.model, inner.max_model_len
        self.stats = inner.stats  # one set of counts: the engine's
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._pending: list[dict] = []
        self._flushing = False

    def prompt(self, user_message, system, thinking):
        return self.inner.prompt(user_message, system, thinking)

    def encode(self, text):
        return self.inner.encode(text)

    def versions(self) -> dict[str, str]:
        return self.inner.versions()

    def sampling_defaults(self) -> dict[str, float]:
        return self.inner.sampling_defaults()

    @contextmanager
    def episode(self):
        """Count the calling thread's episode as in flight while the block runs."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._flush_when_all_wait()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        slot: dict = {"requests": list(requests)}
        with self._cond:
            self._pending.append(slot)
            self._flush_when_all_wait()
            while "result" not in slot:
                self._cond.wait()
        if isinstance(slot["result"], BaseException):
            raise slot["result"]
        return slot["result"]

    def _flush_when_all_wait(self) -> None:
        """With the lock held: while every episode in flight waits, run their batch."""
        while self._pending and not self._flushing and len(self._pending) >= self._active:
            batch, self._pending, self._flushing = self._pending, [], True
            self._cond.release()  # the engine runs without the lock; all others wait
            try:
                self._run(batch)
            finally:
                self._cond.acquire()
            self._flushing = False
            self._cond.notify_all()

    def _run(self, batch: list[dict]) -> None:
        """Give every slot of ``batch`` its generations or its own failure."""
        flat = [r for slot in batch for r in slot["requests"]]
        try:
            out = self.inner.generate(flat)
        except BatchFailure as exc:
            out = exc
        except Exception as exc:
            if len(batch) == 1:
                batch[0]["result"] = exc
                return
            for slot in batch:  # whose request was it? each alone
                self._run([slot])
            return
        except BaseException as exc:  # not the requests' fault: every waiting episode's
            for slot in batch:
                slot["result"] = exc
            return
        start = 0
        for slot in batch:
            end = start + len(slot["requests"])
            if isinstance(out, BatchFailure):
                failed = [out.failures[i] for i in range(start, end) if i in out.failures]
                slot["result"] = failed[0] if failed else out.partial[start:end]
            else:
                slot["result"] = out[start:end]
            start = end


def play_in_lockstep(
    backend: LockstepBackend,
    controller: Controller,
    episodes: Iterable[tuple],
    in_flight: int,
) -> list[EpisodeResult]:
    """Play ``(env, params, question, seed)`` episodes, ``in_flight`` at a time, on an
    environment built on ``backend``; results in the order given."""

    def one(unit: tuple) -> EpisodeResult:
        with backend.episode():
            return next(iter(play_episodes(controller, [unit], time_limit_s=None)))

    with ThreadPoolExecutor(max_workers=max(1, in_flight)) as pool:
        return list(pool.map(one, episodes))
