"""Generation backends: where live branches get their tokens.

A backend turns *token prefixes* into continuations, a whole batch per call, and keeps counts
of what the engine did. Two implementations:

- :class:`VLLMBackend`: vLLM's engine in this process (``vllm.LLM``), prompts as token ids, so
  continuing a branch re-sends its prefix and hits vLLM's prefix cache;
- :class:`~autotts.live.server.OpenAIBackend` (in :mod:`autotts.live.server`): any
  OpenAI-compatible *completions* server (``python -m vllm.entrypoints.openai.api_server``,
  ``vllm serve``, a hosted endpoint). With a vLLM server prompts and outputs are token ids
  (``return_token_ids``); a server that returns only text is continued by text.

``vllm`` and ``openai`` are imported only when a backend is created.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..core.signals import token_confidence
from ..errors import RunFailure


class BackendError(RunFailure):
    """The inference backend could not be reached or answered something unusable."""


class ContextTooLong(BackendError):
    """A question's prompt leaves no room for a branch in the model's context: the question's
    fault (or the settings'), not the backend's."""


class BatchFailure(BackendError):
    """Some requests of a batch failed and others did not: ``failures`` maps a request's
    position to its error, ``partial`` holds the others' generations (``None`` at failed
    positions), so that whoever merged the batch gives each caller its own outcome."""

    def __init__(self, failures: dict[int, BackendError], partial: list):
        first = failures[min(failures)]
        super().__init__(f"{len(failures)} of {len(partial)} requests failed; first: {first}")
        self.failures, self.partial = failures, partial


SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p")


@dataclass(frozen=True)
class GenerationRequest:
    """Continue ``prefix`` (token ids, or text where the backend has no token ids) by at most
    ``max_tokens`` tokens. ``sampling`` overrides the model's generation defaults (its
    ``generation_config``: e.g. Qwen3's temperature 0.6, top_p 0.95, top_k 20) by name
    (``SAMPLING_KEYS``); ``{"temperature": 0}`` decodes greedily. ``seed`` makes sampling
    reproducible per request; ``logprobs=k`` asks for each generated token's top-``k``
    log-probabilities (for the confidence signals, :mod:`autotts.core.signals`).
    ``cancelled``, where given, says when nobody wants the request any more (a served client
    left): a backend that can aborts it on the engine while it runs (counted in
    ``stats.aborted``) and gives it an empty generation."""

    prefix: tuple[int, ...] | str
    max_tokens: int
    sampling: Mapping[str, float] = field(default_factory=dict)
    seed: int | None = None
    logprobs: int = 0
    cancelled: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Generation:
    """What one request produced. ``finished`` is true when the model stopped on its own (EOS
    or a stop token), false when it ran out of ``max_tokens``. With ``logprobs`` requested,
    ``logprobs`` holds each generated token's log-probability and ``confidences`` its token
    confidence (:func:`autotts.core.signals.token_confidence`); ``None`` where the backend gave
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
    aborted: int = 0  # requests aborted on the engine while running (their client left)
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

    def sampling_defaults(self) -> dict[str, float]:
        """The model's generation defaults this backend samples with where a request does not
        override them (``SAMPLING_KEYS`` that the model's generation config sets)."""
        return {}

    def effective_sampling(self, overrides: Mapping[str, float]) -> dict[str, float]:
        """What a request with ``overrides`` samples with: defaults, then the overrides."""
        return {**self.sampling_defaults(), **overrides}

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
                f"the vllm backend needs vLLM installed ({exc}); see docs/guides/live.md "
                "(pip install 'autotts[live]' on GPU machines, '[live-cpu]' on CPU)"
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
                seed=r.seed,
                logprobs=r.logprobs or None,
                **self.effective_sampling(r.sampling),
            )
            for r in requests
        ]
        try:
            if any(r.cancelled is not None for r in requests):
                outputs = self._run_abortable(prompts, params, requests)
            else:
                outputs = self.llm.generate(prompts, params, use_tqdm=False)
        except Exception as exc:
            raise BackendError(f"vLLM generation failed: {type(exc).__name__}: {exc}") from exc
        out = []
        for request, output in zip(requests, outputs, strict=True):
            if output is None:  # aborted: nobody wants it
                out.append(Generation((), "", False, 0))
                continue
            completion = output.outputs[0]
            ids = tuple(completion.token_ids)
            sampled = confidences = None
            if request.logprobs and completion.logprobs is not None:
                sampled, confidences = map(
                    tuple, vllm_token_scores(ids, completion.logprobs, request.logprobs)
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

    _ids = itertools.count()

    def _run_abortable(self, prompts, params, requests) -> list:
        """What ``llm.generate`` does (vLLM's own step loop), checking between engine steps
        whether each request is still wanted and aborting those that are not; ``None`` for an
        aborted request's output."""
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        running: dict[str, int] = {}
        outputs: list = [None] * len(requests)
        try:
            for n, (prompt, param, request) in enumerate(
                zip(prompts, params, requests, strict=True)
            ):
                if _unwanted(request):
                    continue  # gone before it was sent
                param.output_kind = RequestOutputKind.FINAL_ONLY
                request_id = f"autotts-{next(self._ids)}"  # outputs and aborts name it so
                engine.add_request(request_id, prompt, param)
                running[request_id] = n
            while running and engine.has_unfinished_requests():
                gone = [i for i, n in running.items() if _unwanted(requests[n])]
                if gone:
                    engine.abort_request(gone)
                    self.stats.aborted += len(gone)
                    for request_id in gone:
                        del running[request_id]
                for output in engine.step() if running else ():
                    if output.finished and output.request_id in running:
                        outputs[running.pop(output.request_id)] = output
        except BaseException:
            if running:  # nothing of this batch stays on the engine
                engine.abort_request(list(running))
            raise
        if running:
            raise BackendError(f"vLLM ended {len(running)} request(s) without an output")
        return outputs

    def versions(self) -> dict[str, str]:
        import vllm

        return {"vllm": vllm.__version__}

    def sampling_defaults(self) -> dict[str, float]:
        return vllm_sampling_defaults(self.llm.llm_engine.model_config)

    def close(self) -> None:
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if shutdown is not None:
                shutdown()


def _unwanted(request: GenerationRequest) -> bool:
    return request.cancelled is not None and request.cancelled()


def vllm_sampling_defaults(model_config) -> dict[str, float]:
    """The ``SAMPLING_KEYS`` a vLLM model config's generation defaults set (what vLLM samples
    with where a request does not override them)."""
    return {k: v for k, v in model_config.get_diff_sampling_param().items() if k in SAMPLING_KEYS}


def vllm_token_scores(token_ids, per_token, k: int) -> tuple[list[float], list[float]]:
    """Each generated token's log-probability and confidence
    (:func:`autotts.core.signals.token_confidence` over its top ``k``), from vLLM's per-token
    ``{token id: Logprob}`` maps."""
    sampled = [float(scores[t].logprob) for scores, t in zip(per_token, token_ids, strict=False)]
    confidences = [
        token_confidence((s.logprob for s in scores.values()), k) for scores in per_token
    ]
    return sampled, confidences
