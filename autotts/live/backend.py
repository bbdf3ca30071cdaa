"""Generation backends: where live branches get their tokens.

A backend turns *token prefixes* into continuations, a whole batch per call, and keeps counts
of what the engine did. Two implementations:

- :class:`VLLMBackend`: vLLM's engine in this process (``vllm.LLM``), prompts as token ids, so
  continuing a branch re-sends its prefix and hits vLLM's prefix cache;
- :class:`OpenAIBackend`: any OpenAI-compatible *completions* server (``python -m
  vllm.entrypoints.openai.api_server``, ``vllm serve``, a hosted endpoint). With a vLLM server
  prompts and outputs are token ids (``return_token_ids``); a server that returns only text is
  continued by text.

``vllm`` and ``openai`` are imported only when a backend is created.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import RunFailure
from ..signals import token_confidence


class BackendError(RunFailure):
    """The inference backend could not be reached or answered something unusable."""


@dataclass(frozen=True)
class GenerationRequest:
    """Continue ``prefix`` (token ids, or text where the backend has no token ids) by at most
    ``max_tokens`` tokens. ``temperature=0`` decodes greedily; ``seed`` makes sampling
    reproducible per request; ``logprobs=k`` asks for each generated token's top-``k``
    log-probabilities (for the confidence signals, :mod:`autotts.signals`)."""

    prefix: tuple[int, ...] | str
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    logprobs: int = 0


@dataclass(frozen=True)
class Generation:
    """What one request produced. ``finished`` is true when the model stopped on its own (EOS
    or a stop token), false when it ran out of ``max_tokens``. With ``logprobs`` requested,
    ``logprobs`` holds each generated token's log-probability and ``confidences`` its token
    confidence (:func:`autotts.signals.token_confidence`); ``None`` where the backend gave
    none."""

    token_ids: tuple[int, ...] | None
    text: str
    finished: bool
    n_tokens: int
    cached_prompt_tokens: int = 0
    logprobs: tuple[float, ...] | None = None
    confidences: tuple[float, ...] | None = None


@dataclass
class BackendStats:
    """Running totals over every call, to check accounting against the engine's own counts."""

    calls: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class GenerationBackend(ABC):
    """Base of every backend. The contract:

    - :meth:`prompt` turns a user message (the question wrapped in the instruction) into the
      prompt the model expects — its chat template with ``enable_thinking`` where the model
      has one, else the plain text — as token ids (text where the backend has no token ids);
    - :meth:`encode` tokenizes text (no special tokens added) — ``None`` if the backend works
      in text only;
    - :meth:`generate` runs a batch of :class:`GenerationRequest` as *one* engine submission
      (in-process) or as concurrent requests (server), returning one :class:`Generation` per
      request, in order; it raises :class:`BackendError` when the backend cannot answer;
    - ``stats`` accumulates what the engine reported;
    - ``max_model_len`` bounds prompt + generation.
    """

    name: str = ""
    model: str = ""
    max_model_len: int = 0

    def __init__(self) -> None:
        self.stats = BackendStats()

    @abstractmethod
    def prompt(
        self, user_message: str, system: str | None, thinking: bool | None
    ) -> tuple[int, ...] | str:
        """The prompt of one user turn (chat template applied when there is one)."""

    @abstractmethod
    def encode(self, text: str) -> tuple[int, ...] | None:
        """Token ids of ``text`` without special tokens added."""

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Run a batch; see the class docstring."""

    def versions(self) -> dict[str, str]:
        """Library versions worth recording next to results built with this backend."""
        return {}

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release the engine or connection."""

    def _count(self, requests: Sequence[GenerationRequest], out: list[Generation]) -> None:
        stats = self.stats
        stats.calls += 1
        stats.requests += len(requests)
        stats.batch_sizes.append(len(requests))
        for request, generation in zip(requests, out, strict=True):
            if not isinstance(request.prefix, str):
                stats.prompt_tokens += len(request.prefix)
            stats.cached_prompt_tokens += generation.cached_prompt_tokens
            stats.generated_tokens += generation.n_tokens


def _chat_prompt(tokenizer, user_message: str, system: str | None, thinking: bool | None) -> str:
    if not getattr(tokenizer, "chat_template", None):
        return user_message if system is None else f"{system}\n\n{user_message}"
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user_message}
    ]
    extra = {} if thinking is None else {"enable_thinking": thinking}
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, **extra
    )


class VLLMBackend(GenerationBackend):
    """vLLM's offline engine in this process. ``engine_args`` go to ``vllm.LLM`` (for example
    ``tensor_parallel_size``, ``gpu_memory_utilization``, ``max_model_len``,
    ``enforce_eager``). Prefix caching is on by default: continuing a branch re-sends its token
    ids and vLLM reuses the cached blocks.

    Scripts that create one must run under ``if __name__ == "__main__":`` (vLLM starts its
    engine core in a child process)."""

    name = "vllm"

    def __init__(self, model: str, seed: int = 0, **engine_args):
        super().__init__()
        try:
            from vllm import LLM
        except ImportError as exc:
            raise BackendError(
                f"the vllm backend needs vLLM installed ({exc}); see the README's live backend "
                "section (pip install 'autotts[live]' on GPU machines, '[live-cpu]' on CPU)"
            ) from None
        engine_args.setdefault("enable_prefix_caching", True)
        self.model = model
        try:
            self.llm = LLM(model=model, seed=seed, **engine_args)
        except Exception as exc:  # engine start failures come in many types
            raise BackendError(f"vLLM could not start model {model!r}: {exc}") from exc
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)

    def prompt(self, user_message, system=None, thinking=None) -> tuple[int, ...]:
        return self.encode(_chat_prompt(self.tokenizer, user_message, system, thinking))

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text, add_special_tokens=False))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if not requests:
            return []
        prompts = [
            r.prefix if isinstance(r.prefix, str) else TokensPrompt(prompt_token_ids=list(r.prefix))
            for r in requests
        ]
        params = [
            SamplingParams(
                max_tokens=r.max_tokens,
                temperature=r.temperature,
                top_p=r.top_p,
                seed=r.seed,
                logprobs=r.logprobs or None,
            )
            for r in requests
        ]
        try:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        except Exception as exc:
            raise BackendError(f"vLLM generation failed: {type(exc).__name__}: {exc}") from exc
        out = []
        for request, output in zip(requests, outputs, strict=True):
            completion = output.outputs[0]
            ids = tuple(completion.token_ids)
            sampled = confidences = None
            if request.logprobs and completion.logprobs is not None:
                per_token = completion.logprobs  # {token id: Logprob} per generated token
                sampled = tuple(float(d[t].logprob) for d, t in zip(per_token, ids, strict=True))
                confidences = tuple(
                    token_confidence((lp.logprob for lp in d.values()), request.logprobs)
                    for d in per_token
                )
            out.append(
                Generation(
                    token_ids=ids,
                    text=completion.text,
                    finished=completion.finish_reason == "stop",
                    n_tokens=len(ids),
                    cached_prompt_tokens=int(output.num_cached_tokens or 0),
                    logprobs=sampled,
                    confidences=confidences,
                )
            )
        self._count(requests, out)
        return out

    def versions(self) -> dict[str, str]:
        import vllm

        return {"vllm": vllm.__version__}

    def close(self) -> None:
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if shutdown is not None:
                shutdown()


class OpenAIBackend(GenerationBackend):
    """An OpenAI-compatible completions server. Each request of a batch is sent concurrently
    (the server batches them); with a vLLM server, prompts are token ids and outputs come back
    as token ids (``return_token_ids``), so a continuation is exact. The chat template is
    applied by the server's ``/tokenize`` endpoint where it has one (vLLM), else the prompt is
    the plain text. A server with ``/tokenize`` that ignores ``return_token_ids`` is continued
    from its text, tokenized again. Up to ``max_concurrency`` requests are in flight at once
    (a step of 128 branches goes out as one wave)."""

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
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout_s,
            max_retries=1,
        )
        self._errors = (openai.OpenAIError, httpx.HTTPError)
        self._http = httpx.Client(timeout=timeout_s)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency)
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

    def _one(self, request: GenerationRequest) -> Generation:
        prompt = request.prefix if isinstance(request.prefix, str) else list(request.prefix)
        extra = {"return_token_ids": True} if self._token_ids else {}
        try:
            reply = self.client.completions.create(
                model=self.model,
                prompt=prompt,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                top_p=request.top_p,
                seed=request.seed,
                logprobs=request.logprobs or None,
                extra_body=extra or None,
            )
        except self._errors as exc:
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
            ids = self.encode(choice.text or "")
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
        out = list(self._pool.map(self._one, requests))
        self._count(requests, out)
        return out

    def versions(self) -> dict[str, str]:
        import openai

        return {"openai": openai.__version__, "server": self.base_url}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()
        self.client.close()


def _token_ids_of(choice):
    """The generated token ids of a completion choice (vLLM's ``return_token_ids``), or None."""
    ids = getattr(choice, "token_ids", None)
    if ids is None and isinstance(choice.model_extra, dict):
        ids = choice.model_extra.get("token_ids")
    return ids
