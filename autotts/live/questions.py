"""Question sources for live runs: a JSONL/JSON file, or the questions of a replay store.

``--questions`` takes either a path to a file whose records have ``question`` and ``answer``
(``problem`` / ``gold_answer`` are accepted as synonyms), or ``replay:MODEL/DATASET`` to take
the questions and gold answers of a replay store (the shipped AIME24/AIME25 stores are
benchmark loaders that need no download).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..envs.stores import StoreError, load_environment_records
from ..errors import BadInput
from ..utils.atomic_files import json_lines

QUESTION_KEYS = ("question", "problem")
ANSWER_KEYS = ("answer", "gold_answer")


@dataclass(frozen=True)
class LiveQuestion:
    """A question to run live, with its reference answer (never shown to controllers)."""

    question: str
    answer: str


class QuestionsError(BadInput):
    """A question source that cannot be read; the message names the file, line and field."""


def load_questions(spec: str, env_dir: str | Path | None = None, limit: int | None = None):
    """Questions from ``spec`` (a file path or ``replay:MODEL/DATASET``), the first ``limit``."""
    if spec.startswith("replay:"):
        try:
            records = load_environment_records(spec.removeprefix("replay:"), env_dir)
        except StoreError as exc:
            raise QuestionsError(str(exc)) from None
        questions = [LiveQuestion(r.question, r.gold_answer) for r in records]
    else:
        questions = _from_file(Path(spec))
    if not questions:
        raise QuestionsError(f"{spec}: no questions")
    return questions[:limit] if limit else questions


def _from_file(path: Path) -> list[LiveQuestion]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise QuestionsError(
            f"{path}: question file not found (JSONL with 'question' and 'answer' per line, "
            "or replay:MODEL/DATASET)"
        ) from None
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise QuestionsError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(rows, list):
            raise QuestionsError(f"{path}: expected a JSON list of question objects")
        numbered = [(f"item {i}", row) for i, row in enumerate(rows)]
    else:
        numbered = [(f"line {n}", row) for n, row in json_lines(path, text, QuestionsError)]
    return [_question(path, where, row) for where, row in numbered]


def _question(path: Path, where: str, row) -> LiveQuestion:
    if not isinstance(row, dict):
        raise QuestionsError(f"{path}, {where}: expected an object with 'question' and 'answer'")
    values = []
    for keys in (QUESTION_KEYS, ANSWER_KEYS):
        key = next((k for k in keys if k in row), None)
        if key is None:
            raise QuestionsError(f"{path}, {where}: missing field '{keys[0]}'")
        value = row[key]
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise QuestionsError(f"{path}, {where}: field '{key}' must be a non-empty string")
        values.append(value)
    return LiveQuestion(*values)
