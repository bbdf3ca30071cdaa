"""The request bodies the server accepts (the OpenAI fields that mean something for a
test-time-scaling episode, plus ``beta`` and ``thinking``; other OpenAI fields are accepted
and ignored, since the controller decides how much to generate) and the error body.
``max_completion_tokens`` (or the older ``max_tokens``) bounds what the whole episode
generates, branches and probes: the server's own cap applies where it is lower."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# what one request may generate at most unless the server says otherwise: twice 64
# branches of 32k tokens
MAX_REQUEST_TOKENS = 4_000_000


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: dict | None = None
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    n: int = Field(default=1, ge=1, le=1)  # one episode per request
    beta: float | None = Field(default=None, ge=0.0, le=1.0)
    thinking: Literal["keep", "strip"] = "keep"
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    def token_budget(self, cap: int | None) -> int | None:
        """The episode's budget of generated tokens: the client's, within the server's cap."""
        asked = [n for n in (self.max_completion_tokens, self.max_tokens, cap) if n is not None]
        return min(asked) if asked else None


def _text(value: str) -> str:
    """``value``, refused (a 400) where it is no text a tokenizer can take: JSON's ``\\ud800``
    escapes decode to lone surrogates, which vLLM's tokenizer and UTF-8 cannot encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (a lone surrogate)") from None
    return value


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict] | None = None

    @field_validator("content")
    @classmethod
    def _text_content(cls, content):
        if isinstance(content, str):
            return _text(content)
        for part in content or ():
            if part.get("type") == "text":
                if not isinstance(part.get("text", ""), str):
                    raise ValueError("a text part's text must be a string")
                _text(part.get("text", ""))
        return content

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(_Common):
    messages: list[Message] = Field(min_length=1)

    @field_validator("messages")
    @classmethod
    def _asks_something(cls, messages: list[Message]) -> list[Message]:
        if not any(m.role == "user" and m.text().strip() for m in messages):
            raise ValueError("no user message with text: the last one is the question")
        return messages

    def question(self) -> str:
        return next(m.text() for m in reversed(self.messages) if m.role == "user")

    def system(self) -> str | None:
        parts = [m.text() for m in self.messages if m.role in ("system", "developer")]
        return "\n\n".join(parts) if parts else None


class CompletionRequest(_Common):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt):
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise ValueError("one prompt per request (each is one episode)")
            prompt = prompt[0]
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        return _text(prompt)

    def question(self) -> str:
        return self.prompt


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


__all__ = ["MAX_REQUEST_TOKENS", "ChatRequest", "CompletionRequest", "Message", "error_body"]
