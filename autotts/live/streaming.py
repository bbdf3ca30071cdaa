"""The streaming store builder: ``autotts build-env --streaming`` (vLLM in this process).

The stepwise builder (:mod:`autotts.live.builder`) stops every branch at each interval, waits
for the whole batch, probes, and continues by re-sending each branch's prefix. Here every
branch is *one* generation on vLLM's async engine (``AsyncLLM``), streamed: as soon as a
branch has produced the first token past an interval boundary, a probe request is forked from
its streamed ids cut at the boundary plus the probe suffix, so the probe's prompt is the
running request's prefix and comes from the prefix cache; no branch waits for another, and
several questions are in flight at once (``questions_in_flight``).

The record is the stepwise builder's: probes at every boundary the branch generates past, the
final answer from the whole text, per-interval ``confidence``/``logprob`` signals
(:mod:`autotts.core.signals`). Two deliberate differences, both tested: a branch is sampled with
one seed for its whole generation (the stepwise builder reseeds every interval), so sampled
stores differ while greedy stores are identical; and the text is detokenized as one sequence
(the stepwise builder joins per-interval pieces).

Resumable per question with atomic writes (:class:`~autotts.live.builder.PartialBuild`).
``stats`` counts prompt, cached and generated tokens of branches and probes from the engine's
own per-request numbers, for the prefill benchmark (``benchmarks/builder_prefill.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..core.signals import interval_means
from ..envs.answers import final_answer, probe_answer
from .backend import (
    BackendError,
    BackendStats,
    _chat_prompt,
    vllm_sampling_defaults,
    vllm_token_scores,
)
from .builder import PartialBuild
from .live_environment import LiveQuestion
from .settings import LiveSettings


class StreamingBuilder:
    """vLLM's async engine in this process (``engine_args`` as for :class:`VLLMBackend`).
    Scripts that create one must run under ``if __name__ == "__main__":``."""

    name = "vllm-streaming"

    def __init__(self, model: str, seed: int = 0, **engine_args):
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise BackendError(f"the streaming builder needs vLLM installed ({exc})") from None
        engine_args.setdefault("enable_prefix_caching", True)
        if _on_cpu():  # vLLM-CPU cannot rewind a seeded request's generator after a partial
            # prefill ("CPU Generator does not use offset"): a budget no prompt batch exceeds
            engine_args.setdefault("max_num_batched_tokens", 32_768)
        self.model = model
        try:
            args = AsyncEngineArgs(model=model, seed=seed, **engine_args)
            self.engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:  # engine start failures come in many types
            raise BackendError(f"vLLM could not start model {model!r}: {exc}") from exc
        self.tokenizer = self.engine.get_tokenizer()
        self.max_model_len = int(self.engine.model_config.max_model_len)
        self.stats = BackendStats()
        self._request_ids = itertools.count()
        # one event loop for the engine's life: its output handler runs on the loop it
        # started on, so every build runs on this one
        self._loop = asyncio.new_event_loop()

    def versions(self) -> dict[str, str]:
        import vllm

        return {"vllm": vllm.__version__}

    def sampling_defaults(self) -> dict[str, float]:
        return vllm_sampling_defaults(self.engine.model_config)

    def close(self) -> None:
        engine = self.__dict__.pop("engine", None)
        if engine is not None:
            engine.shutdown()
        loop = self._loop
        if not loop.is_closed():  # let the engine's output handler finish on its own loop
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()

            async def drain():
                await asyncio.gather(*pending, return_exceptions=True)

            loop.run_until_complete(drain())
            loop.close()

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt(self, question: str, settings: LiveSettings) -> tuple[int, ...]:
        message = settings.user_message(question)
        return self.encode(
            _chat_prompt(self.tokenizer, message, settings.system, settings.thinking)
        )

    async def _run(self, prompt: Sequence[int], params):
        """One request to the end, streamed: yields each delta output; counts it."""
        from vllm.inputs import TokensPrompt

        request_id = f"autotts-{next(self._request_ids)}"
        final = None
        async for out in self.engine.generate(
            TokensPrompt(prompt_token_ids=list(prompt)), params, request_id
        ):
            final = out
            yield out
        stats = self.stats
        stats.requests += 1
        stats.prompt_tokens += len(prompt)
        stats.cached_prompt_tokens += int(getattr(final, "num_cached_tokens", 0) or 0)

    async def _probe(self, prefix: Sequence[int], settings: LiveSettings) -> str:
        from vllm import SamplingParams

        # greedy needs no seed (and a seeded request can trip vLLM-CPU's generator offsets)
        params = SamplingParams(max_tokens=settings.probe_tokens, temperature=0.0)
        text, n = "", 0
        async for out in self._run(prefix, params):
            text, n = out.outputs[0].text, len(out.outputs[0].token_ids)
        self.stats.generated_tokens += n
        return probe_answer(text, settings.probe_suffix)

    async def _branch(self, prompt, suffix, settings: LiveSettings, seed: int, limit: int):
        """One branch to its end; returns its store entry and its interval signals."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        delta = settings.delta
        params = SamplingParams(
            max_tokens=limit, seed=seed, logprobs=settings.logprobs or None,
            output_kind=RequestOutputKind.DELTA,
            **{**self.sampling_defaults(), **settings.sampling},
        )  # fmt: skip
        ids: list[int] = []
        sampled: list[float] = []
        confidences: list[float] = []
        text, probes = "", []
        async for out in self._run(prompt, params):
            piece = out.outputs[0]
            text += piece.text
            scores = vllm_token_scores(piece.token_ids, piece.logprobs or (), settings.logprobs)
            sampled.extend(scores[0])
            confidences.extend(scores[1])
            ids.extend(piece.token_ids)
            while len(ids) > (len(probes) + 1) * delta:  # a boundary the branch went past
                cut = (len(probes) + 1) * delta
                probes.append(
                    asyncio.ensure_future(self._probe((*prompt, *ids[:cut], *suffix), settings))
                )
        self.stats.generated_tokens += len(ids)
        answers = [await p for p in probes]
        n_intervals = len(answers) + 1
        signals = {}
        if settings.logprobs and len(confidences) == len(ids):
            signals = {
                "confidence": interval_means(confidences, delta, n_intervals),
                "logprob": interval_means(sampled, delta, n_intervals),
            }
        return [answers, len(ids), final_answer(text)], signals

    async def _question(self, question: LiveQuestion, index: int, n: int, settings, seed: int):
        prompt = self.prompt(question.question, settings)
        suffix = self.encode(settings.probe_suffix)
        try:
            limit = settings.branch_limit(self.model, self.max_model_len, len(prompt), len(suffix))
        except BackendError as exc:
            raise BackendError(f"question {index}: {exc}") from None
        branch_seeds = [
            (seed * 1_000_003 + index * 10_007 + i * 101) % (2**31 - 1) for i in range(n)
        ]
        done = await asyncio.gather(
            *(self._branch(prompt, suffix, settings, s, limit) for s in branch_seeds)
        )
        branches = [entry for entry, _ in done]
        record = {
            "question": question.question,
            "gold_answer": question.answer,
            "probe_freq": settings.delta,
            "each_branch": branches,
            "final_answers_trace": [b[2] for b in branches],
        }
        if all(signals for _, signals in done):
            record["signals"] = {
                name: [signals[name] for _, signals in done] for name in ("confidence", "logprob")
            }
        return record

    def build(
        self,
        questions: Sequence[LiveQuestion],
        out: str | Path,
        n: int = 128,
        settings: LiveSettings | None = None,
        seed: int = 0,
        source: str = "",
        questions_in_flight: int = 4,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> Path:
        """Sample a store for ``questions`` into ``out``, ``questions_in_flight`` questions at
        a time (each written as soon as it is complete); resumes a partial build with the same
        settings. Returns the store path."""
        settings = settings or LiveSettings()
        build = PartialBuild(
            out, self.model, "vllm", self.versions(), settings, n, seed, source,
            len(questions), builder="streaming",
            sampling={**self.sampling_defaults(), **settings.sampling},
        )  # fmt: skip
        todo = [q for q in range(len(questions)) if not build.done(q)]
        finished = len(questions) - len(todo)

        async def run_all():
            nonlocal finished
            gate = asyncio.Semaphore(max(1, questions_in_flight))

            async def one(q: int):
                nonlocal finished
                async with gate:
                    start = time.perf_counter()
                    record = await self._question(questions[q], q, n, settings, seed)
                    build.write(q, record)
                    finished += 1
                    if progress is not None:
                        progress(finished, len(questions), time.perf_counter() - start)

            await asyncio.gather(*(one(q) for q in todo))

        self._loop.run_until_complete(run_all())
        return build.finish()


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


__all__ = ["StreamingBuilder"]
