"""One OpenAI-compatible chat endpoint, with every exchange and its usage logged to a run."""

from __future__ import annotations

import time

from ..rundir import RunDirectory


class LLMClient:
    """Chat completions through the ``openai`` client. ``llm`` holds ``model`` and optionally
    ``base_url``, ``temperature``, ``price_in``/``price_out`` ($ per million tokens)."""

    def __init__(self, run: RunDirectory, llm: dict, api_key: str | None):
        from openai import OpenAI

        self.run, self.llm = run, llm
        self.client = OpenAI(
            base_url=llm.get("base_url"),
            api_key=api_key or "not-needed",
            max_retries=1,
            timeout=120,
        )

    def chat(self, round_: int, messages: list[dict]) -> str:
        """One completion; logs the exchange and its usage. Network errors propagate."""
        start = time.perf_counter()
        response = self.client.chat.completions.create(
            model=self.llm["model"],
            messages=messages,
            temperature=self.llm.get("temperature", 0.7),
        )
        text = response.choices[0].message.content if response.choices else ""
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
