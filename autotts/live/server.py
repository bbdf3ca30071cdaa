"""The OpenAI-compatible server backend: any completions server (``vllm serve``, a hosted
endpoint) as a :class:`~autotts.live.backend.GenerationBackend`. ``openai`` and ``httpx`` are
imported only when one is created."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Sequence

from ..core.signals import token_confidence
from .backend import (
    SAMPLING_KEYS,
    BackendError,
    BatchFailure,
    Generation,
    GenerationBackend,
    GenerationRequest,
)


class OpenAIBackend(GenerationBackend):
    """An OpenAI-compatible completions server. Each request of a batch is sent concurrently
    (the server batches them); with a vLLM server, prompts are token ids and outputs come back
    as token ids (``return_token_ids``), so a continuation is exact. The chat template is
    applied by the server's ``/tokenize`` endpoint where it has one (vLLM), else the prompt is
    the plain text. A server with ``/tokenize`` that ignores ``return_token_ids`` is continued
    from its text, tokenized again. Up to ``max_concurrency`` requests are in flight at once
    (a step of 128 branches goes out as one wave), on an event loop of the backend's own; a
    request whose ``cancelled()`` turns true while it runs has its connection closed, which
    makes a vLLM server abort it (counted in ``stats.aborted``)."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        max_concurrency: int = 256,
    ):
        super().__init__()
        import httpx
        import openai

        self.base_url = base_url.rstrip("/")
        options = {
            "base_url": self.base_url,
            "api_key": api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            "timeout": timeout_s,
            "max_retries": 1,
        }
        self.client = openai.OpenAI(**options)  # models and the like
        self.async_client = openai.AsyncOpenAI(**options)  # completions, cancellable
        self._errors = (openai.OpenAIError, httpx.HTTPError)
        self._http = httpx.Client(timeout=timeout_s)
        self._loop = asyncio.new_event_loop()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._closed = False
        threading.Thread(target=self._loop.run_forever, name="openai-backend", daemon=True).start()
        try:
            models = self.client.models.list().data
        except self._errors as exc:
            raise BackendError(
                f"cannot reach the completions server at {self.base_url}: {exc}. Is it running? "
                "(python -m vllm.entrypoints.openai.api_server --model M --host 127.0.0.1 "
                "--port P)"
            ) from None
        if model is None:
            if not models:
                raise BackendError(f"{self.base_url} serves no model; name the model to use")
            model = models[0].id
        self.model = model
        card = next((m for m in models if m.id == model), None)
        self.max_model_len = int(getattr(card, "max_model_len", 0) or 0)
        self._tokenize_url = self.base_url.removesuffix("/v1") + "/tokenize"
        self._token_ids = self._probe_tokenizer()

    def _probe_tokenizer(self) -> bool:
        try:
            reply = self._http.post(self._tokenize_url, json={"model": self.model, "prompt": "1"})
            return reply.status_code == 200 and "tokens" in reply.json()
        except self._errors:
            return False

    def prompt(self, user_message, system=None, thinking=None) -> tuple[int, ...] | str:
        if not self._token_ids:
            return user_message if system is None else f"{system}\n\n{user_message}"
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user_message}
        ]
        body = {"model": self.model, "messages": messages, "add_generation_prompt": True}
        if thinking is not None:
            body["chat_template_kwargs"] = {"enable_thinking": thinking}
        return tuple(self._tokenize(body))

    def _tokenize(self, body: dict) -> list[int]:
        try:
            reply = self._http.post(self._tokenize_url, json=body)
            reply.raise_for_status()
            return list(reply.json()["tokens"])
        except (*self._errors, KeyError, ValueError) as exc:
            raise BackendError(f"{self._tokenize_url} failed: {exc}") from None

    def encode(self, text: str) -> tuple[int, ...] | None:
        if not self._token_ids:
            return None
        body = {"model": self.model, "prompt": text, "add_special_tokens": False}
        return tuple(self._tokenize(body))

    async def _one(self, request: GenerationRequest) -> Generation:
        prompt = request.prefix if isinstance(request.prefix, str) else list(request.prefix)
        extra = {"return_token_ids": True} if self._token_ids else {}
        # what is not overridden is left out: the server samples with the model's defaults
        sampling = dict(request.sampling)
        extra.update({k: sampling.pop(k) for k in ("top_k", "min_p") if k in sampling})
        try:
            async with self._slots:
                reply = await self.async_client.completions.create(
                    model=self.model,
                    prompt=prompt,
                    max_tokens=request.max_tokens,
                    seed=request.seed,
                    logprobs=request.logprobs or None,
                    extra_body=extra or None,
                    **sampling,
                )
        except (*self._errors, ValueError) as exc:  # (a text the client cannot encode)
            raise BackendError(f"completion request to {self.base_url} failed: {exc}") from None
        if not reply.choices:
            raise BackendError(f"{self.base_url} returned no choices")
        choice = reply.choices[0]
        ids = _token_ids_of(choice)
        usage = reply.usage
        n_tokens = len(ids) if ids is not None else int(getattr(usage, "completion_tokens", 0))
        if ids is None and not isinstance(request.prefix, str):
            # a server with /tokenize that ignores return_token_ids: continue from the text,
            # tokenized again (the branch may then differ from the sampled ids at a boundary)
            ids = await asyncio.to_thread(self.encode, choice.text or "")
        details = getattr(usage, "prompt_tokens_details", None)
        sampled = confidences = None
        scores = getattr(choice, "logprobs", None)
        if request.logprobs and scores is not None and scores.token_logprobs is not None:
            sampled = tuple(float(v) for v in scores.token_logprobs)
            tops = scores.top_logprobs or []
            if len(tops) == len(sampled) and all(tops):
                confidences = tuple(token_confidence(t.values(), request.logprobs) for t in tops)
        return Generation(
            token_ids=tuple(ids) if ids is not None else None,
            text=choice.text or "",
            finished=choice.finish_reason == "stop",
            n_tokens=n_tokens,
            cached_prompt_tokens=int(getattr(details, "cached_tokens", 0) or 0),
            logprobs=sampled,
            confidences=confidences,
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Every request at once; where some fail, :class:`BatchFailure` says which (the
        others' generations are kept in it, and counted). After :meth:`close` (or while it
        runs), a :class:`BackendError`."""
        if self._closed:
            raise BackendError(f"the backend for {self.base_url} is closed")
        futures = [asyncio.run_coroutine_threadsafe(self._one(r), self._loop) for r in requests]
        watched = {n for n, r in enumerate(requests) if r.cancelled is not None}
        running = set(futures)
        while running:
            running = concurrent.futures.wait(
                running,
                timeout=0.05 if watched else None,
                return_when=concurrent.futures.FIRST_COMPLETED,
            ).not_done
            for n in [n for n in watched if futures[n] in running and requests[n].cancelled()]:
                if futures[n].cancel():  # its connection closes: the server aborts it
                    running.discard(futures[n])
                    self.stats.aborted += 1
                watched.discard(n)
        if self._closed:  # its requests were cancelled by close(), not by their callers
            raise BackendError(f"the backend for {self.base_url} was closed during a generation")
        out: list = []
        failures: dict[int, BackendError] = {}
        for n, future in enumerate(futures):
            if future.cancelled():
                out.append(Generation((), "", False, 0))
                continue
            try:
                out.append(future.result())
            except BackendError as exc:
                out.append(None)
                failures[n] = exc
        if failures:
            done = [(r, g) for r, g in zip(requests, out, strict=True) if g is not None]
            self._count([r for r, _ in done], [g for _, g in done])
            raise failures[0] if len(requests) == 1 else BatchFailure(failures, out)
        self._count(requests, out)
        return out

    def versions(self) -> dict[str, str]:
        import openai

        return {"openai": openai.__version__, "server": self.base_url}

    def sampling_defaults(self) -> dict[str, float]:
        """The served model's generation config where it can be read here (a local path or
        a cached download), which a vLLM server applies to what requests leave out; else
        empty (the server's defaults, unknown here)."""
        try:
            from transformers import GenerationConfig

            config = GenerationConfig.from_pretrained(self.model, local_files_only=True)
        except Exception:  # noqa: BLE001 - no local config: the server knows its defaults
            return {}
        return {k: v for k, v in config.to_diff_dict().items() if k in SAMPLING_KEYS}

    def close(self) -> None:
        """Close the connections; generations still running are cancelled, and their
        :meth:`generate` raises :class:`BackendError` (none waits for ever)."""
        self._closed = True
        if self._loop.is_running():
            closing = asyncio.run_coroutine_threadsafe(self._shut_down(), self._loop)
            with contextlib.suppress(Exception):
                closing.result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._http.close()
        self.client.close()

    async def _shut_down(self) -> None:
        running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await self.async_client.close()


def _token_ids_of(choice):
    """The generated token ids of a completion choice (vLLM's ``return_token_ids``), or None."""
    ids = getattr(choice, "token_ids", None)
    if ids is None and isinstance(choice.model_extra, dict):
        ids = choice.model_extra.get("token_ids")
    return ids
