"""One request = one live episode: the question the request asks, played by a served
controller on the shared backend, with its own seed, and what the reply says about it.

Every generation call of the episode goes through a :class:`RequestBackend`, which counts
the request's own tokens (prefilled and generated, branches and probes), reports progress,
and, once the client has gone (:meth:`cancel`), has the backend abort the request's
generations still running and stops the episode at its next call. Once a request has
generated its budget of tokens (the server's cap, or the client's ``max_tokens``), no further
generation call is sent (:class:`TokenBudgetSpent`): the call that reached it was the last,
and the episode answers with what its branches found so far (``finish_reason: "length"``)."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

from ..core.contract import Controller, ControllerFailure, RemoteController
from ..core.engine import EpisodeResult, play
from ..envs.answers import UNPARSABLE, final_answer
from ..live.backend import BackendError, Generation, GenerationBackend, GenerationRequest
from ..live.live_environment import LiveEnvironment, LiveEpisode, LiveQuestion
from ..live.settings import LiveSettings

THINKING = re.compile(r"^.*?</think>\s*", re.S)


class Cancelled(BackendError):
    """The client went away: the episode's next generation call is not sent."""


class TokenBudgetSpent(ControllerFailure):
    """The request has generated its budget of tokens: the episode's next generation call is
    not sent, and the episode ends (:func:`play_request` answers with what it found)."""


class RequestBackend(GenerationBackend):
    """The shared backend seen by one request: counts its tokens, reports each finished call to
    ``progress(counts)``, marks its generation requests so that the backend can abort them
    once :meth:`cancel` is called, and refuses calls after it. With ``max_tokens``, a call
    is refused (:class:`TokenBudgetSpent`) once the request has generated that many tokens: it
    generates at most ``max_tokens`` plus what its last call generated (a call's requests
    can only be cut at their start: a live episode's state follows each request's length)."""

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
        if self.max_tokens is not None and self.generated >= self.max_tokens:
            self.budget_spent = True
            raise TokenBudgetSpent(
                f"token budget spent: {self.generated:,} tokens generated, the request's "
                f"budget is {self.max_tokens:,}"
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


def _answer_from_what_was_found(state, result: EpisodeResult) -> None:
    """An episode the token budget ended answers with the most common final answer of its
    finished branches, else of its latest probe answers (the first such in branch order on a
    tie; ``ERR``, no answer, never counts); with neither, it stays unanswered (its error says
    why)."""
    found = [a if a and a != UNPARSABLE else None for a in state.answer]
    finals = [a for a, done in zip(found, state.finished, strict=True) if done and a]
    votes = finals or [a for a in found if a]
    if votes:
        result.answer = Counter(votes).most_common(1)[0][0]
        kind = "finished branches" if finals else "branches' latest probes"
        result.reason = f"{result.error}; answered by the majority of {len(votes)} {kind}"
        result.error = None


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
    if backend.budget_spent and result.answer is None:
        _answer_from_what_was_found(episode.state, result)
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
