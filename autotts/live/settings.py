"""Live generation's settings: :class:`LiveSettings`, how a question becomes a prompt
(instruction, system prompt, thinking mode), the interval Δ, the probe (answer-forcing suffix,
probe length), sampling and the branch length limit. Recorded next to every store built
with them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..core.signals import TOP_LOGPROBS
from ..envs.answers import DEFAULT_PROBE_SUFFIX, NON_THINKING_PROBE_SUFFIX
from .backend import ContextTooLong

DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


class LiveSettings(BaseModel):
    """Everything that shapes a live branch besides the model and the seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delta: int = Field(500, gt=0, description="tokens per interval (Δ)")
    max_branch_tokens: int | None = Field(
        None,
        gt=0,
        description="a branch that reaches this many generated tokens is finished (default: "
        "as many as the model's context leaves after prompt and probe)",
    )
    instruction: str = Field(DEFAULT_INSTRUCTION, description="appended to the question")
    system: str | None = None
    thinking: bool | None = Field(
        True, description="enable_thinking for chat templates that have it (None: leave out)"
    )
    probe_suffix: str = Field(
        None,  # type: ignore[assignment]  # filled in by _suffix_follows_thinking
        description="appended to a branch's prefix to force an answer (default: closes the "
        "thinking block in thinking mode, not otherwise)",
    )
    probe_tokens: int = Field(16, gt=0, description="greedy tokens decoded per probe")
    # sampling: None leaves the model's generation default (its generation_config) in place
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0, le=1)
    logprobs: int = Field(
        TOP_LOGPROBS,
        ge=0,
        le=20,
        description="top log-probabilities per generated token, summarised per interval as "
        "the confidence signals (autotts.core.signals); 0 records none",
    )

    @model_validator(mode="before")
    @classmethod
    def _suffix_follows_thinking(cls, data):
        if isinstance(data, dict) and data.get("probe_suffix") is None:
            thinking = data.get("thinking", True)
            suffix = NON_THINKING_PROBE_SUFFIX if thinking is False else DEFAULT_PROBE_SUFFIX
            data = {**data, "probe_suffix": suffix}
        return data

    def branch_limit(self, model: str, max_model_len: int, prompt: int, suffix: int) -> int:
        """Tokens a branch may generate after a ``prompt``-token prompt on a model with
        ``max_model_len`` (0: unknown) when probes append ``suffix`` tokens: by default all
        the context leaves (32,768 where the context is unknown); an explicit
        ``max_branch_tokens`` that does not fit, or a room under one interval, is an error."""
        if not max_model_len:
            return self.max_branch_tokens or 32_768
        room = max_model_len - prompt - suffix - self.probe_tokens
        limit = room if self.max_branch_tokens is None else self.max_branch_tokens
        if limit > room:
            raise ContextTooLong(
                f"max_branch_tokens={limit} does not fit {model}'s context of {max_model_len} "
                f"tokens after the {prompt}-token prompt and the probe ({suffix} + "
                f"{self.probe_tokens}): at most {room}; raise --max-model-len (rope scaling: "
                "--engine-arg hf_overrides=...) or lower --max-branch-tokens"
            )
        if limit < self.delta:
            raise ContextTooLong(
                f"the {prompt}-token prompt leaves {room} tokens of {model}'s {max_model_len}, "
                f"less than one interval (delta={self.delta}); raise max_model_len or lower delta"
            )
        return limit

    @property
    def sampling(self) -> dict[str, float]:
        """The sampling parameters set explicitly (the rest: the model's defaults)."""
        values = {"temperature": self.temperature, "top_p": self.top_p}
        values |= {"top_k": self.top_k, "min_p": self.min_p}
        return {k: v for k, v in values.items() if v is not None}

    def user_message(self, question: str) -> str:
        return f"{question}\n\n{self.instruction}" if self.instruction else question


__all__ = ["DEFAULT_INSTRUCTION", "LiveSettings"]
