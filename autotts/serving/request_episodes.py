"""One request = one live episode: the question the request asks, played by a served
controller on the shared backend, with its own seed, and what the reply says about it.

Every generation call of the episode goes through a :class:`RequestBackend`, which counts
the request's own tokens (prefilled and generated, branches and probes), reports progress,
and, once the client has gone (:meth:`cancel`), has the backend abort the request's
generations still running and stops the episode at its next call. A request's budget of
generated tokens (the server's cap, or the client's ``max_tokens``) is never exceeded: the
call that could exceed it is not sent, and the episode ends there (:class:`TokenBudgetSpent`,
``finish_reason: "length"``)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

from ..core.contract import Controller, ControllerFailure, RemoteController
from ..core.engine import EpisodeResult, play
from ..envs.answers import final_answer
from ..live.backend import BackendError, Generation, GenerationBackend, GenerationRequest
from ..live.live_environment import LiveEnvironment, LiveEpisode, LiveQuestion
from ..live.settings import LiveSettings

THINKING = re.compile(r"^.*?</think>\s*", re.S)


class Cancelled(BackendError):
    """The client went away: the episode's next generation call is not sent."""


class TokenBudgetSpent(ControllerFailure):
    """The episode's next generation call could take the request past its budget of generated
    tokens: it is not sent, and the episode ends (as a controller would end on its limits)."""


class RequestBackend(GenerationBackend):
    """The shared backend seen by one request: counts its tokens, reports each finished call to
    ``progress(counts)``, marks its generation requests so that the backend can abort them
    once :meth:`cancel` is called, and refuses calls after it. With ``max_tokens``, a call
    whose requests could together generate more than what is left of it is refused
    (:class:`TokenBudgetSpent`): the request never generates more than ``max_tokens``."""

    def __init__(
        self,
        inner: GenerationBackend,
        progress: Callable[[dict], None] | None = None,
        max_tokens: int | None = None,
    ):
        super().__init__()
        self.inner, self.progress, self.max_tokens = inner, progress, max_tokens
        self.budget_spent = False
        self.name, self.model, self.max_model_len = inner.name, inner.model, inner.max_model_len
        self.prefilled = self.generated = self.calls = 0
        self.failure: BackendError | None = None
        self._cancelled = threading.Event()

    def prompt(self, user_message, system, thinking):
        return self.inner.prompt(user_message, system, thinking)

    def encode(self, text):
        return self.inner.encode(text)

    def sampling_defaults(self):
        return self.inner.sampling_defaults()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        if self.cancelled:  # recorded as the failure, so play_request raises it (not an answer)
            self.failure = Cancelled("the client disconnected")
            raise self.failure
        if self.max_tokens is not None:
            worst = sum(r.max_tokens for r in requests)
            if self.generated + worst > self.max_tokens:
                self.budget_spent = True
                raise TokenBudgetSpent(
                    f"the request's budget of {self.max_tokens:,} generated tokens: "
                    f"{self.generated:,} spent, the next call could generate {worst:,} more"
                )
        wanted = [replace(r, cancelled=self._cancelled.is_set) for r in requests]
        try:
            out = self.inner.generate(wanted)
        except BackendError as exc:
            self.failure = exc
            raise
        if self.cancelled:  # aborted on the way: the episode ends here
            self.failure = Cancelled("the client disconnected")
            raise self.failure
        self.calls += 1
        for request, generation in zip(requests, out, strict=True):
            if not isinstance(request.prefix, str):
                self.prefilled += len(request.prefix)
            self.generated += generation.n_tokens
        if self.progress:
            self.progress({"calls": self.calls, "generated_tokens": self.generated})
        return out


@dataclass
class ServedEpisode:
    """What a request's episode produced, in the terms of the reply."""

    answer: str | None
    content: str  # the chosen branch's text (thinking kept or stripped), ending in the answer
    reasoning: str  # the chosen branch's thinking, where it was stripped from ``content``
    prompt_tokens: int  # prefilled over every generation call (branches and probes)
    completion_tokens: int  # generated: branch and probe tokens
    details: dict = field(default_factory=dict)  # the reply's ``autotts`` object
    error: str | None = None  # the controller failed (the reply is still an answer)
    seconds: float = 0.0


def _chosen_branch(episode: LiveEpisode, answer: str | None) -> int | None:
    """The first finished branch whose final answer is the episode's answer."""
    finished = [i for i, done in enumerate(episode.done) if done]
    return next((i for i in finished if final_answer(episode.branches[i].text) == answer), None)


def play_request(
    backend: RequestBackend,
    controller: Controller,
    params: dict,
    question: str,
    seed: int,
    settings: LiveSettings,
    *,
    label: str,
    keep_thinking: bool = True,
    max_branches: int = 64,
    in_flight: Callable[[], AbstractContextManager] = nullcontext,
) -> ServedEpisode:
    """Play one episode of ``controller`` (at ``params``) on ``question`` (blocking: run it in
    a worker thread). A backend failure raises :class:`BackendError` (:class:`Cancelled` once
    the client has gone); a controller failure is an answer with ``error`` set. The episode
    generates inside ``in_flight()`` (e.g. :meth:`LockstepBackend.episode`), entered once its
    prompt is built: a request still tokenizing its question holds no shared batch back."""
    start = time.perf_counter()
    env = LiveEnvironment(
        backend, [LiveQuestion(question, "")], settings, max_branches=max_branches,
        env_id=f"serve:{backend.model}",
    )  # fmt: skip
    episode = LiveEpisode(env, 0, seed)  # raises BackendError when the prompt cannot fit
    result = EpisodeResult(0, seed, None, 0, 0, 0, 0)
    # a sandboxed episode joins the shared batches only with its calls: its worker's compute
    # (or start) must not hold the other requests' batches back
    with nullcontext() if isinstance(controller, RemoteController) else in_flight():
        play(episode, controller, params, result, env.max_steps)
    if backend.failure is not None:
        raise backend.failure
    if backend.cancelled:  # (a sandboxed episode ended as its client left)
        raise Cancelled("the client disconnected")
    chosen = _chosen_branch(episode, result.answer)
    text = episode.branches[chosen].text if chosen is not None else ""
    reasoning = ""
    if not keep_thinking and "</think>" in text:
        reasoning = text[: text.index("</think>")].removeprefix("<think>").strip()
        text = THINKING.sub("", text, count=1)
    if chosen is None and result.answer is not None:
        text = f"The final answer is $\\boxed{{{result.answer}}}$."
    state = episode.state
    details = {
        "controller": label,
        "branches": len(episode.branches),
        "finished": sum(episode.done),
        "pruned": sum(bool(p) for p in state.pruned),
        "probe_tokens": result.probe_tokens,
        "branch_tokens": result.tokens - result.probe_tokens,
        "tokens_per_branch": [b.generated for b in episode.branches],
        "chosen_branch": chosen,
        "stop_reason": result.reason or (result.error or ""),
        "seed": seed,
        "budget_spent": backend.budget_spent,
    }
    return ServedEpisode(
        answer=result.answer,
        content=text,
        reasoning=reasoning,
        prompt_tokens=backend.prefilled,
        completion_tokens=backend.generated,
        details=details,
        error=result.error,
        seconds=time.perf_counter() - start,
    )


__all__ = ["Cancelled", "RequestBackend", "ServedEpisode", "TokenBudgetSpent", "play_request"]
