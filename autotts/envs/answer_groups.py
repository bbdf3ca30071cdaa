"""Equivalence-aware answers (``--canonicalize``): a store's answers grouped by mathematical
equivalence, so votes no longer split between ``0.5`` and ``\\frac{1}{2}`` or ``070`` and ``70``.

Off by default: the paper's evaluator compares answer strings exactly, and so do the published
numbers. With it, every answer of a question — probe answers, final answers and the gold
answer — is replaced by its group's representative before any controller sees it:

- answers are grouped per question (answers of different questions never meet);
- two answers are equivalent when math-verify parses both to the same value: integers
  directly (the fast path: most AIME answers), other answers through ``math_verify.parse``,
  numbers as exact rationals, and every merge of two different strings is confirmed with
  ``math_verify.verify``; ``ERR`` (no extractable answer) and answers math-verify cannot
  parse stay as they are;
- a group's representative is its most frequent final answer (ties: the one seen first),
  never chosen by the gold answer, so controllers learn nothing about it.

The grouping is computed once per store file and cached in ``$AUTOTTS_CACHE_DIR`` (or the user
cache directory) under the file's hash, so a second run costs a file read. ``merge_report``
lists what merged, for the README's report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections import Counter
from pathlib import Path

from ..utils.atomic_files import atomic_write_text
from .stores import QuestionRecord

VERSION = 1  # of the grouping rule: bump when it changes, so old caches are not reused
_INTEGER = re.compile(r"^\s*([+-]?)\s*0*(\d+)\s*$")
UNPARSABLE = "ERR"  # like the shipped data: an answer that could not be read


def cache_dir() -> Path:
    from .stores import cache_root

    return cache_root() / "canonical"


def _value(answer: str):
    """A hashable exact value of ``answer`` and math-verify's parse of it (None: no value)."""
    match = _INTEGER.match(answer)
    if match:
        sign, digits = match.groups()
        return ("number", int(sign + digits), 1), None
    try:
        parsed = _parse(answer)
    except Exception:  # math-verify raises on some malformed inputs: no value
        return None, None
    if not parsed:
        return None, None
    expr = parsed[0]
    try:
        if getattr(expr, "is_number", False) and expr.is_real:
            import sympy

            rational = sympy.nsimplify(expr, rational=True) if expr.is_Float else expr
            if rational.is_Rational:
                return ("number", int(rational.p), int(rational.q)), parsed
        return ("expression", str(expr)), parsed
    except Exception:
        return None, None


def math_timeout() -> int | None:
    """math-verify's time limit: its timeouts use signals, which only the main thread sets."""
    return 5 if threading.current_thread() is threading.main_thread() else None


def parse_answer(answer: str):
    """math-verify's parse of an answer string (bare answers are read as inline LaTeX)."""
    from math_verify import parse

    text = answer if "\\boxed" in answer or "$" in answer else f"${answer}$"
    return parse(text, parsing_timeout=math_timeout())


def _parse(answer: str):
    if math_timeout() is None:
        logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns of every None
    return parse_answer(answer)


def _confirmed(a: str, a_parsed, b: str, b_parsed) -> bool:
    """math-verify's verdict on two answers of equal value (two integers need none)."""
    from math_verify import verify

    if a_parsed is None and b_parsed is None:
        return True
    try:
        a_parsed = _parse(a) if a_parsed is None else a_parsed
        b_parsed = _parse(b) if b_parsed is None else b_parsed
        return bool(verify(a_parsed, b_parsed, timeout_seconds=math_timeout()))
    except Exception:  # math-verify raises on some malformed inputs: not confirmed
        return False


def question_groups(finals: list[str], others: list[str]) -> dict[str, str]:
    """``{answer: representative}`` for the answers of one question that change (see the
    module docstring); ``finals`` rank representatives, ``others`` (probes, gold) join."""
    counts = Counter(finals)
    order = list(dict.fromkeys([*finals, *others]))
    by_value: dict[tuple, list[tuple[str, object]]] = {}
    for answer in order:
        if answer == UNPARSABLE:
            continue
        value, parsed = _value(answer)
        if value is not None:
            by_value.setdefault(value, []).append((answer, parsed))
    mapping: dict[str, str] = {}
    for members in by_value.values():
        if len(members) < 2:
            continue
        rank = {a: (-counts[a], i) for i, (a, _) in enumerate(members)}
        head, head_parsed = min(members, key=lambda m: rank[m[0]])
        for answer, parsed in members:
            if answer != head and _confirmed(head, head_parsed, answer, parsed):
                mapping[answer] = head
    return mapping


def store_groups(records: list[QuestionRecord]) -> list[dict[str, str]]:
    """:func:`question_groups` of every question of a store."""
    groups = []
    for record in records:
        finals = [final for _, _, final in record.each_branch]
        probes = [p for probes, _, _ in record.each_branch for p in probes]
        groups.append(question_groups(finals, [*probes, record.gold_answer]))
    return groups


def cached_groups(path: Path, records: list[QuestionRecord]) -> list[dict[str, str]]:
    """:func:`store_groups` of the store at ``path``, from the cache when it has them."""
    from importlib.metadata import version

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    tag = f"{digest}-v{VERSION}-mv{version('math-verify')}"
    cached = cache_dir() / f"{tag}.json"
    if cached.exists():
        try:
            return json.loads(cached.read_text())
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed
    groups = store_groups(records)
    atomic_write_text(cached, json.dumps(groups))
    return groups


def canonical_records(
    records: list[QuestionRecord], groups: list[dict[str, str]]
) -> list[QuestionRecord]:
    """``records`` with every answer replaced by its group's representative."""
    out = []
    for record, mapping in zip(records, groups, strict=True):
        if not mapping:
            out.append(record)
            continue

        def get(answer: str, mapping=mapping) -> str:
            return mapping.get(answer, answer)

        branches = [([get(p) for p in probes], tokens, get(final))
                    for probes, tokens, final in record.each_branch]  # fmt: skip
        update = {"each_branch": branches, "gold_answer": get(record.gold_answer)}
        if record.final_answers_trace is not None:
            update["final_answers_trace"] = [get(a) for a in record.final_answers_trace]
        out.append(record.model_copy(update=update))
    return out


def merge_report(records: list[QuestionRecord], groups: list[dict[str, str]]) -> list[dict]:
    """Every merged group: question index, representative, the strings merged into it, how
    many final answers changed, and whether the gold answer's group grew."""
    rows = []
    for q, (record, mapping) in enumerate(zip(records, groups, strict=True)):
        merged: dict[str, list[str]] = {}
        for answer, head in mapping.items():
            merged.setdefault(head, []).append(answer)
        finals = Counter(final for _, _, final in record.each_branch)
        gold = mapping.get(record.gold_answer, record.gold_answer)
        for head, members in merged.items():
            rows.append({
                "question": q,
                "representative": head,
                "merged": sorted(members),
                "finals_changed": sum(finals[m] for m in members),
                "gold_group": head == gold,
            })  # fmt: skip
    return rows


__all__ = [
    "UNPARSABLE",
    "cached_groups",
    "canonical_records",
    "math_timeout",
    "merge_report",
    "parse_answer",
    "question_groups",
]
