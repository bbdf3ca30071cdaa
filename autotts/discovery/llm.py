"""One OpenAI-compatible chat endpoint, with every exchange and its usage logged to a run."""

from __future__ import annotations

import time

from ..rundir import RunDirectory
from .replies import strip_reasoning


class LLMClient:
    """Chat completions through the ``openai`` client. ``llm`` holds ``model`` and optionally
    ``base_url``, ``temperature``, ``price_in``/``price_out`` ($ per million tokens),
    ``max_tokens`` per reply, ``timeout_s`` per request and ``max_retries`` (the client's own
    retries with exponential backoff on connection errors, 429 and 5xx)."""

    def __init__(self, run: RunDirectory, llm: dict, api_key: str | None):
        from openai import OpenAI

        self.run, self.llm = run, llm
        self.client = OpenAI(
            base_url=llm.get("base_url"),
            api_key=api_key or "not-needed",
            max_retries=int(llm.get("max_retries", 4)),
            timeout=float(llm.get("timeout_s", 600.0)),
        )

    def chat(self, round_: int, messages: list[dict]) -> str:
        """One completion; logs the exchange and its usage. Network errors propagate. The
        reply is its answer only: a reasoning model's thinking (``<think>…</think>`` in the
        text, or a separate ``reasoning_content``) never reaches the code extraction."""
        start = time.perf_counter()
        response = self.client.chat.completions.create(
            model=self.llm["model"],
            messages=messages,
            temperature=self.llm.get("temperature", 0.7),
            max_tokens=int(self.llm.get("max_tokens", 16_384)),
        )
        text = strip_reasoning(response.choices[0].message.content if response.choices else "")
        usage = response.usage
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        completion_tokens = getattr(usage, "completion_tokens", 0) or 0
        usd = None
        if self.llm.get("price_in") is not None or self.llm.get("price_out") is not None:
            usd = (
                prompt_tokens * (self.llm.get("price_in") or 0.0)
                + completion_tokens * (self.llm.get("price_out") or 0.0)
            ) / 1e6
        self.run.append(
            {"round": round_, "request": messages[-1], "reply": text, "time": time.time()},
            log="messages.jsonl",
        )
        self.run.append(
            {
                "event": "llm_usage",
                "round": round_,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "usd": usd,
                "seconds": time.perf_counter() - start,
            }
        )
        return text or ""
