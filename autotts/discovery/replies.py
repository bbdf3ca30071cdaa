"""What the LLM proposer reads and writes: its prompt files (``agents/``), the controller a
reply proposes (a whole file, or SEARCH/REPLACE edits of the best one so far), and the
execution traces it is shown (failures first, within a character budget)."""

from __future__ import annotations

import re
from string import Template
from typing import Any

from ..sandbox import static_problems
from ..utils.project_files import project_dir

PROMPTS = project_dir("agents")
CODE_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def prompt(name: str, **values: Any) -> str:
    """A prompt file of ``agents/`` with ``$placeholders`` filled in."""
    return Template((PROMPTS / name).read_text()).safe_substitute(**values)


EDIT_BLOCK = re.compile(r"<<<<<<< SEARCH\n(.*?)\n=======\n(.*?)\n?>>>>>>> REPLACE", re.DOTALL)


def apply_edits(base: str, reply: str) -> tuple[str | None, str | None]:
    """Apply SEARCH/REPLACE edit blocks to ``base``: ``(source, None)`` or ``(None, why)``."""
    source = base
    for search, replace in EDIT_BLOCK.findall(reply):
        if source.count(search) != 1:
            found = "not found" if search not in source else "found more than once"
            first = search.strip().splitlines()[0] if search.strip() else ""
            return None, f"edit failed: the SEARCH text starting {first!r} was {found} in the base"
        source = source.replace(search, replace)
    return source, None


THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL)


def strip_reasoning(reply: str | None) -> str:
    """A reply without its reasoning: every ``<think>…</think>`` block removed, and an
    unclosed one (a reply cut off while thinking) to the end — code written while thinking is
    never taken."""
    text = reply or ""
    if "</think>" in text and "<think>" not in text:  # the template opened the block
        text = text.split("</think>", 1)[1]
    return THINK_BLOCK.sub("", text).strip()


def extract_code(reply: str | None, base: str | None = None) -> tuple[str | None, str | None]:
    """The controller a reply proposes — a whole file in a ```python block, or SEARCH/REPLACE
    edits of ``base`` (the best candidate so far): ``(source, None)`` or ``(None, why the
    reply is unusable)``."""
    if not reply or not reply.strip():
        return None, "the reply was empty"
    blocks = CODE_BLOCK.findall(reply)
    if blocks:
        source = max(blocks, key=len)
    elif EDIT_BLOCK.search(reply):
        if base is None:
            return None, "edit blocks need a base, and there is no accepted candidate yet"
        source, error = apply_edits(base, reply)
        if error:
            return None, error
    elif "```" in reply or "<<<<<<< SEARCH" in reply:
        return None, "the code block is not closed (truncated reply?)"
    else:
        return None, "the reply has no ```python code block (nor SEARCH/REPLACE edits)"
    problems = static_problems(source)
    if problems:
        return None, "static check failed: " + "; ".join(problems[:5])
    if "Controller" not in source:
        return None, "the code defines no autotts.Controller subclass"
    return source, None


def select_failure_traces(traces: list[dict], budget_chars: int) -> str:
    """Wrong stops first (gold was visible yet another answer was returned), then the most
    wasteful correct episodes; rendered compactly within ``budget_chars``."""

    def seen_gold(t: dict) -> bool:
        return any(t["gold"] in step["revealed"] for step in t["steps"])

    wrong = sorted(
        (t for t in traces if not t["correct"] and seen_gold(t)), key=lambda t: t["tokens"]
    )
    wasteful = sorted((t for t in traces if t["correct"]), key=lambda t: -t["branches"])
    out: list[str] = []
    used = 0
    for kind, group in (("wrong stop", wrong[:3]), ("wasted branches", wasteful[:2])):
        for t in group:
            text = render_trace(t, kind)
            if used + len(text) > budget_chars:
                return "\n\n".join(out) or "(traces over budget)"
            out.append(text)
            used += len(text)
    return "\n\n".join(out) or "(no failures in the recorded traces)"


def render_trace(t: dict, kind: str, max_steps: int = 12) -> str:
    head = (
        f"[{kind}] {t['env']} q{t['question']} seed {t['seed']} {t['setting']}: answered "
        f"{t['answer']!r}, gold {t['gold']!r}, {t['branches']} branches, {t['tokens']:,} tokens; "
        f"stop reason: {t['reason'] or '-'}"
    )
    steps = t["steps"]
    shown = steps if len(steps) <= max_steps else steps[: max_steps // 2] + steps[-max_steps // 2 :]
    lines = [head]
    for i, s in enumerate(shown):
        if len(steps) > max_steps and i == max_steps // 2:
            lines.append(f"  … {len(steps) - max_steps} steps …")
        revealed = ",".join(str(a) for a in s["revealed"][:SHOWN_IDS]) + _more(s["revealed"])
        ids = ",".join(str(i) for i in s["ids"][:SHOWN_IDS]) + _more(s["ids"])
        lines.append(f"  {s['action']} [{ids}] → [{revealed}] tokens={s['tokens']:,}")
    return "\n".join(lines)


SHOWN_IDS = 16  # ids and answers shown per traced action; the rest are counted


def _more(values) -> str:
    hidden = len(values) - SHOWN_IDS
    return f",… +{hidden} more" if hidden > 0 else ""
