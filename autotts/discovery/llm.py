"""One OpenAI-compatible chat endpoint, with every exchange and its usage logged to a run."""

from __future__ import annotations

import json
import time

from ..results.run_directory import RunDirectory
from .replies import strip_reasoning

# Structured output: the reply as JSON with these fields, turned back into the text protocol
# (ACTION line, a ```python file or SEARCH/REPLACE edits) that the rest of the loop parses.
PROPOSAL_SCHEMA = {
    "type": "object",
    "properties": {
        "idea": {"type": "string", "description": "the idea, in a few sentences"},
        "action": {"type": "string", "enum": ["test", "submit"]},
        "code": {"type": "string", "description": "the whole controller file (or empty)"},
        "edits": {"type": "string", "description": "SEARCH/REPLACE edit blocks (or empty)"},
        "test": {
            "type": "string",
            "description": "with action test: the test's choices, e.g. 'betas=0,0.5 seeds=6' "
            "(or empty for the default)",
        },
    },
    "required": ["idea", "action", "code", "edits", "test"],
    "additionalProperties": False,
}


def proposal_text(content: str) -> str:
    """A structured reply rewritten in the text protocol; any other reply unchanged."""
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, TypeError):
        return content
    if not isinstance(data, dict) or not ({"code", "edits"} & set(data)):
        return content
    parts = [str(data.get("idea") or ""), f"ACTION: {data.get('action') or 'submit'}"]
    if data.get("test"):
        parts.append(f"TEST: {data['test']}")
    if data.get("code"):
        parts.append(f"```python\n{data['code'].strip()}\n```")
    if data.get("edits"):
        parts.append(str(data["edits"]))
    return "\n\n".join(parts)


class LLMClient:
    """Chat completions through the ``openai`` client. ``llm`` holds ``model`` and optionally
    ``base_url``, ``temperature``, ``price_in``/``price_out`` ($ per million tokens),
    ``max_tokens`` per reply, ``timeout_s`` per request and ``max_retries`` (the client's own
    retries with exponential backoff on connection errors, 429 and 5xx). ``structured``
    (default on) asks for JSON following :data:`PROPOSAL_SCHEMA`; an endpoint that refuses
    ``response_format`` is asked in text from then on (logged as ``llm_structured_off``)."""

    def __init__(self, run: RunDirectory, llm: dict, api_key: str | None):
        from openai import OpenAI

        self.run, self.llm = run, llm
        self.structured = bool(llm.get("structured", True))
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
        from openai import BadRequestError, UnprocessableEntityError

        start = time.perf_counter()
        request = {
            "model": self.llm["model"],
            "messages": messages,
            "temperature": self.llm.get("temperature", 0.7),
            "max_tokens": int(self.llm.get("max_tokens", 16_384)),
        }
        structured = {"type": "json_schema", "json_schema": {"name": "controller_proposal",
                                                             "schema": PROPOSAL_SCHEMA}}  # fmt: skip
        try:
            extra = {"response_format": structured} if self.structured else {}
            response = self.client.chat.completions.create(**request, **extra)
        except (BadRequestError, UnprocessableEntityError) as exc:
            if not self.structured:
                raise
            self.structured = False  # this endpoint has no structured output: text from now
            self.run.append({"event": "llm_structured_off", "reason": str(exc)[:300]})
            response = self.client.chat.completions.create(**request)
        text = strip_reasoning(response.choices[0].message.content if response.choices else "")
        text = proposal_text(text)
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
