"""The ASGI application: ``POST /v1/chat/completions``, ``POST /v1/completions``,
``GET /v1/models``, ``GET /health`` and ``GET /metrics``.

- The model name picks the controller (``cmc``, or ``cmc@beta=0.3``; ``beta`` in the body
  does the same); the question is the last user message (chat) or the prompt (completions);
  system messages become the chat template's system prompt. ``seed`` (default: the server's)
  fixes every branch's sampling, so an answer does not depend on the requests it was batched
  with. ``thinking: "strip"`` moves the chosen branch's thinking to ``reasoning_content``.
- The reply's content is the chosen branch's text (the first finished branch with the
  episode's answer); ``usage`` counts every token prefilled and generated for the request
  (all branches and probes); ``autotts`` reports the controller at its β, branches, pruned,
  tokens per branch, probe tokens and the stop reason.
- ``stream: true`` sends Server-Sent Events: while the episode runs, progress as SSE comment
  lines ``: progress {"calls": …, "generated_tokens": …}`` (OpenAI clients skip comments),
  then OpenAI ``chat.completion.chunk`` (or ``text_completion``) chunks of the final content,
  a last chunk with ``finish_reason`` and ``autotts``, usage when
  ``stream_options.include_usage`` asks, and ``data: [DONE]``.
- At most ``max_in_flight`` episodes run at once and ``max_queue`` more wait; beyond that a
  request gets 429 with ``Retry-After``. A client that disconnects has its episode stopped:
  the backend aborts its generations still running (the in-process engine between steps, a
  server by the closed connection), and no call of it is sent afterwards; its place is free
  once its episode has ended.
- Errors are OpenAI-style bodies: 400 names the field, 404 lists the served models, 502
  names the backend, 500 what else failed (a schedule, the server); none stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from ..errors import BadInput
from ..live.backend import BackendError, ContextTooLong, GenerationBackend
from ..live.live_environment import SIGNALS
from ..live.lockstep import LockstepBackend
from ..live.settings import LiveSettings
from .metrics import ServeMetrics
from .request_episodes import Cancelled, RequestBackend, ServedEpisode, play_request
from .schema import MAX_REQUEST_TOKENS, ChatRequest, CompletionRequest, error_body
from .served import ServedControllers, UnknownModel

RETRY_AFTER_S = 1


class _Admission:
    """Counts requests in the server: ``limit`` running plus ``queue`` waiting at most. A
    request leaves when its episode's thread has ended (not when its client has gone)."""

    def __init__(self, in_flight: int, queue: int, metrics: ServeMetrics):
        self.limiter = anyio.CapacityLimiter(in_flight)
        # the episodes' worker threads: anyio's default limiter (40) would cap in_flight
        self.threads = anyio.CapacityLimiter(in_flight)
        self.capacity, self.inside, self.metrics = in_flight + queue, 0, metrics

    def enter(self) -> bool:
        if self.inside >= self.capacity:
            return False
        self.inside += 1
        return True

    def leave(self) -> None:
        self.inside -= 1


def app(
    controllers: ServedControllers | list[str],
    backend: GenerationBackend,
    settings: LiveSettings | None = None,
    *,
    seed: int = 0,
    max_in_flight: int = 16,
    max_queue: int = 64,
    max_branches: int = 64,
    max_request_tokens: int | None = MAX_REQUEST_TOKENS,
) -> FastAPI:
    """The application serving ``controllers`` (a :class:`ServedControllers` or its specs) on
    ``backend``; ``settings`` shape every branch (prompt instruction, Δ, probes, sampling).
    ``max_request_tokens`` caps what one request's episode may generate (``None``: no cap);
    a client's ``max_tokens`` lowers it for its request."""
    if max_request_tokens is not None and max_request_tokens < 1:
        raise BadInput(f"max_request_tokens must be ≥ 1 (None: no cap), got {max_request_tokens}")
    owned = not isinstance(controllers, ServedControllers)
    served = ServedControllers(controllers) if owned else controllers
    settings = settings or LiveSettings()
    recorded = set(SIGNALS) if settings.logprobs else set()
    for s in served.served.values():
        missing = [name for name in s.controller.requires or () if name not in recorded]
        if missing:
            raise BadInput(
                f"{s.name} reads the signal(s) {missing}, which live episodes record only with "
                "logprobs (LiveSettings(logprobs=20); autotts serve asks for them then)"
            )
    shared = LockstepBackend(backend)
    metrics = ServeMetrics()
    metrics.watch_backend(shared.stats)
    admission = _Admission(max_in_flight, max_queue, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(_):
        yield
        if owned:  # the sandboxed controllers' spare workers end with the app
            served.close()

    api = FastAPI(title="autotts serve", version="1", lifespan=lifespan)

    def fail(status: int, message: str, kind: str, param=None, code=None, model="-", **headers):
        metrics.requests.labels(model, str(status)).inc()
        body = error_body(message, kind, param, code)
        return JSONResponse(body, status_code=status, headers=headers or None)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        return fail(400, f"invalid request: {where}: {first.get('msg', 'malformed')}",
                    "invalid_request_error", param=where)  # fmt: skip

    @api.get("/health")
    async def health():
        return {"status": "ok", "models": served.names(), "backend": backend.model,
                "requests_inside": admission.inside}  # fmt: skip

    @api.get("/metrics")
    async def prometheus():
        return Response(metrics.text(), media_type="text/plain; version=0.0.4")

    @api.get("/v1/models")
    async def models():
        now = int(time.time())
        return {"object": "list", "data": [
            {"id": s.name, "object": "model", "created": now, "owned_by": "autotts",
             "default_beta": s.beta, "description": s.description, "sandboxed": s.sandboxed}
            for s in served.served.values()
        ]}  # fmt: skip

    async def answer(request: Request, body, question: str, system: str | None, chat: bool):
        try:
            chosen, beta = served.resolve(body.model, body.beta)
        except UnknownModel as exc:
            return fail(404, str(exc), "invalid_request_error", "model", "model_not_found")
        except BadInput as exc:
            return fail(400, str(exc), "invalid_request_error", "model")
        label = f"{chosen.name}@beta={beta:g}"
        try:  # the controller's own code, before the request takes a place
            params = chosen.controller.params(beta)
        except Exception as exc:  # noqa: BLE001 - any failure of the schedule is a reply
            return fail(500, f"{label}: the controller's schedule failed: "
                        f"{type(exc).__name__}: {exc}", "server_error", code="controller_error",
                        model=chosen.name)  # fmt: skip
        loop = asyncio.get_running_loop()
        progress: asyncio.Queue = asyncio.Queue()
        per_request = RequestBackend(
            shared,
            lambda counts: loop.call_soon_threadsafe(progress.put_nowait, counts),
            max_tokens=body.token_budget(max_request_tokens),
        )
        run_settings = (
            settings if system is None else settings.model_copy(update={"system": system})
        )

        def run() -> ServedEpisode:
            return play_request(
                per_request, chosen.controller, params, question,
                body.seed if body.seed is not None else seed, run_settings, label=label,
                keep_thinking=body.thinking != "strip", max_branches=max_branches,
                in_flight=shared.episode,
            )  # fmt: skip

        async def episode() -> ServedEpisode:
            metrics.waiting.inc()
            try:
                async with admission.limiter:
                    metrics.waiting.dec()
                    metrics.in_flight.inc()
                    try:
                        return await anyio.to_thread.run_sync(run, limiter=admission.threads)
                    finally:
                        metrics.in_flight.dec()
            finally:
                admission.leave()

        if not admission.enter():
            return fail(429, f"the server is full ({admission.capacity} requests inside); "
                        f"retry in {RETRY_AFTER_S} s", "rate_limit_error", model=chosen.name,
                        **{"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
        # the place is taken here, and released by the task alone, once its thread has ended
        # (nothing awaits the task unshielded, so a client leaving cannot end it early)
        task = asyncio.ensure_future(episode())
        task.add_done_callback(_retrieve)
        reply = _Reply(chat, label, body)
        if body.stream:
            stream = _stream(request, task, progress, per_request, reply, metrics, chosen.name)
            # (the background cancel covers a client gone before the stream's first chunk)
            return StreamingResponse(stream, media_type="text/event-stream",
                                     background=BackgroundTask(per_request.cancel))  # fmt: skip
        watcher = asyncio.ensure_future(_cancel_on_disconnect(request, task, per_request))
        try:
            done = await asyncio.shield(task)
        except Cancelled:
            metrics.stops.labels(chosen.name, "cancelled").inc()
            return fail(499, "client disconnected", "cancelled", model=chosen.name)
        except ContextTooLong as exc:
            return fail(400, f"the question does not fit {backend.model!r}'s context: {exc}",
                        "invalid_request_error", "messages", "context_length_exceeded",
                        model=chosen.name)  # fmt: skip
        except BackendError as exc:
            return fail(502, f"backend {backend.model!r} ({backend.name}) failed: {exc}",
                        "backend_error", code="bad_gateway", model=chosen.name)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - an OpenAI-style 500, not a bare one
            return fail(500, f"{label}: {type(exc).__name__}: {exc}", "server_error",
                        model=chosen.name)  # fmt: skip
        finally:
            watcher.cancel()
        metrics.episode(chosen.name, done)
        metrics.requests.labels(chosen.name, "200").inc()
        return reply.complete(done)

    @api.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        question, system = body.question(), body.system()
        return await answer(request, body, question, system, chat=True)

    @api.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await answer(request, body, body.question(), None, chat=False)

    api.state.metrics, api.state.served, api.state.backend = metrics, served, shared
    return api


class _Reply:
    """The OpenAI-format bodies of one request: the whole reply, or its stream chunks."""

    def __init__(self, chat: bool, label: str, body):
        self.chat, self.label, self.body = chat, label, body
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def usage(self, done: ServedEpisode) -> dict:
        return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                "total_tokens": done.prompt_tokens + done.completion_tokens}  # fmt: skip

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.label}

    def complete(self, done: ServedEpisode) -> dict:
        if self.chat:
            message = {"role": "assistant", "content": done.content}
            if done.reasoning:
                message["reasoning_content"] = done.reasoning
            choice = {"index": 0, "message": message, "finish_reason": _finish(done)}
            head = self._head("chat.completion")
        else:
            choice = {"index": 0, "text": done.content, "finish_reason": _finish(done),
                      "logprobs": None}  # fmt: skip
            head = self._head("text_completion")
        return {**head, "choices": [choice], "usage": self.usage(done), "autotts": done.details}

    def chunks(self, done: ServedEpisode):
        """The stream's data chunks after the episode ended."""
        if self.chat:
            kind = "chat.completion.chunk"
            delta = {"role": "assistant", "content": done.content}
            if done.reasoning:
                delta["reasoning_content"] = done.reasoning
            yield {
                **self._head(kind),
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            last = {"index": 0, "delta": {}, "finish_reason": _finish(done)}
        else:
            kind = "text_completion"
            last = {"index": 0, "text": done.content, "finish_reason": _finish(done),
                    "logprobs": None}  # fmt: skip
        yield {**self._head(kind), "choices": [last], "autotts": done.details}
        options = self.body.stream_options or {}
        if options.get("include_usage"):
            yield {**self._head(kind), "choices": [], "usage": self.usage(done)}


def _finish(done: ServedEpisode) -> str:
    """OpenAI's ``finish_reason``: ``length`` where the token budget ended the episode."""
    return "length" if done.details.get("budget_spent") else "stop"


def _retrieve(task: asyncio.Task) -> None:
    """Mark a finished episode task's exception retrieved (a client that left never reads
    it)."""
    if not task.cancelled():
        task.exception()


async def _cancel_on_disconnect(request: Request, task, backend: RequestBackend) -> None:
    while not task.done():
        if await request.is_disconnected():
            backend.cancel()
            return
        await asyncio.sleep(0.25)


async def _stream(request, task, progress, backend, reply: _Reply, metrics, model: str):
    ended, getter = False, None
    try:
        while not task.done():
            getter = asyncio.ensure_future(progress.get())
            await asyncio.wait({getter, task}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield f": progress {json.dumps(getter.result())}\n\n"
            else:
                getter.cancel()
                yield ": waiting\n\n"  # keeps proxies from timing out; clients skip it
        ended = True
    finally:
        if getter is not None:
            getter.cancel()
        if not ended:  # the client went away mid-stream: cancelled, or the stream closed
            backend.cancel()  # its running generations are aborted; its task ends it
            metrics.stops.labels(model, "cancelled").inc()
            metrics.requests.labels(model, "499").inc()
    try:
        done = task.result()
    except BackendError as exc:
        status = "499" if isinstance(exc, Cancelled) else "502"
        metrics.requests.labels(model, status).inc()
        body = error_body(f"backend failed: {exc}", "backend_error", code="bad_gateway")
        yield f"data: {json.dumps(body)}\n\n"
        return
    except Exception as exc:  # noqa: BLE001 - an error event, not a cut stream
        metrics.requests.labels(model, "500").inc()
        yield f"data: {json.dumps(error_body(f'{type(exc).__name__}: {exc}', 'server_error'))}\n\n"
        return
    metrics.episode(model, done)
    metrics.requests.labels(model, "200").inc()
    for chunk in reply.chunks(done):
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


__all__ = ["app"]
