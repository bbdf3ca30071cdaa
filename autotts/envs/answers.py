"""Answers in generated text: extraction and grading, shared by live runs, sample imports and
collaboration graphs (live generation's settings are :mod:`autotts.live.settings`).

- the probe suffixes: the answer-forcing text a probe appends (with and without thinking);
- :func:`extract_boxed`: the content of the last ``\\boxed{...}`` (balanced braces), the
  convention of the shipped data; :func:`probe_answer` reads a probe's short greedy decode,
  which continues right after the suffix's ``\\boxed{``.
- :func:`answers_match`: math-verify equivalence for live grading (exact string match first).
"""

from __future__ import annotations

from .answer_groups import UNPARSABLE, math_timeout, parse_answer

DEFAULT_PROBE_SUFFIX = "\n</think>\n\nThe final answer is \\boxed{"
# without thinking the chat template has already closed the (empty) thinking block
NON_THINKING_PROBE_SUFFIX = "\n\nThe final answer is \\boxed{"


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (nested braces balanced), or None."""
    start = text.rfind("\\boxed{")
    while start != -1:
        answer = _balanced(text, start + len("\\boxed{"))
        if answer is not None:
            return answer.strip()
        start = text.rfind("\\boxed{", 0, start)
    return None


def _balanced(text: str, i: int) -> str | None:
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def final_answer(text: str) -> str:
    """The answer a finished branch gives: its last boxed answer, else ``ERR``."""
    answer = extract_boxed(text)
    return answer if answer else UNPARSABLE


def probe_answer(decoded: str, suffix: str = DEFAULT_PROBE_SUFFIX) -> str:
    """The answer in a probe's greedy decode. When the suffix ends inside ``\\boxed{``, the
    decode continues the box: read up to its closing brace. Otherwise read a boxed answer."""
    if suffix.endswith("\\boxed{"):
        answer = _balanced(decoded, 0)
        if answer is not None and answer.strip():
            return answer.strip()
        return UNPARSABLE
    return final_answer(decoded)


def answers_match(gold: str, predicted: str | None) -> bool:
    """Whether ``predicted`` is mathematically equivalent to ``gold`` (math-verify), with
    exact string equality as the fast path. ``ERR`` and ``None`` never match."""
    if predicted is None or predicted == UNPARSABLE:
        return False
    if predicted.strip() == gold.strip():
        return True
    try:
        from math_verify import verify
    except ImportError:  # grading degrades to exact match without math-verify
        return False
    try:
        expected, got = parse_answer(gold), parse_answer(predicted)
        return bool(verify(expected, got, timeout_seconds=math_timeout()))
    except Exception:  # math-verify raises on some malformed inputs; they are not equal
        return False
