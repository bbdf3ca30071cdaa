"""Execution traces: the action-by-action record of an episode, as JSON Lines.

Every episode run by the replay environment records its trace (controllers need not trace
themselves). One JSONL line per episode, validated by :class:`EpisodeTrace`; the schema is
documented in ``traces/README.md`` and exported as JSON Schema by ``autotts trace schema``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import BadInput
from ..utils.atomic_files import atomic_write_text

SCHEMA_VERSION = 1


class TraceStep(BaseModel):
    """One action and what it revealed."""

    model_config = ConfigDict(extra="forbid")

    action: Literal[
        "branch", "continue", "probe", "prune", "read", "note", "generate", "charge_again"
    ]
    ids: list[int]
    revealed: list[str | None]  # answer of each id after the action (note: the note text)
    finished: list[int]  # ids whose final answer this action revealed
    tokens: int  # episode cost after the action


class TraceFrame(BaseModel):
    """One frame of the traceback of a controller error (outside autotts's engine)."""

    model_config = ConfigDict(extra="forbid")

    file: str
    line: int | None
    function: str
    code: str | None


class EpisodeTrace(BaseModel):
    """One episode: identity, outcome and steps."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    env: str
    controller: str
    setting: str
    params: dict[str, Any]
    question: int
    seed: int
    answer: str | None
    gold: str
    correct: bool
    tokens: int
    probe_tokens: int
    branches: int
    reason: str
    error: str | None
    steps: list[TraceStep]
    # cross-model environments only: each branch's model (by id), the priced cost, tokens per model
    models: list[str] | None = None
    cost: float | None = None
    model_tokens: dict[str, int] | None = None
    # a controller error: its traceback outside the engine, innermost frame last
    traceback: list[TraceFrame] | None = None


def episode_record(env, config, params: dict, result) -> dict:
    """The JSON-ready trace of one finished episode (``result.trace`` must be recorded)."""
    steps = [
        {
            "action": a,
            "ids": list(ids),
            "revealed": list(rev),
            "finished": list(done),
            "tokens": tok,
        }
        for a, ids, rev, done, tok in (result.trace or ())
    ]
    record = {
        "schema_version": SCHEMA_VERSION,
        "env": env.env_id,
        "controller": config.name,
        "setting": config.setting,
        "params": params,
        "question": result.question,
        "seed": result.seed,
        "answer": result.answer,
        "gold": env.gold(result.question),
        "correct": env.is_correct(result.question, result.answer),
        "tokens": result.tokens,
        "probe_tokens": result.probe_tokens,
        "branches": result.opened,
        "reason": result.reason,
        "error": result.error,
        "steps": steps,
    }
    if result.cost is not None:
        models = [
            model
            for event, ids, model, *_ in result.actions or ()
            if event in ("branch", "read")
            for _ in ids
        ]
        record.update(models=models, cost=result.cost, model_tokens=result.model_tokens)
    frames = error_frames(result.exception) if result.exception is not None else []
    if frames:
        record["traceback"] = frames
    return record


def error_frames(exc: BaseException) -> list[dict]:
    """The frames of ``exc``'s traceback outside autotts's engine (the controller's code and
    what it called), innermost last, as trace records hold them."""
    import traceback

    from ..core.engine import ENGINE_DIR

    return [
        {"file": f.filename, "line": f.lineno, "function": f.name, "code": f.line or None}
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(ENGINE_DIR)
    ]


def write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    """Write records atomically, one JSON object per line."""
    return atomic_write_text(
        path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    )


class TraceFileError(BadInput):
    """A trace file that does not follow the schema; the message names file and line."""


def read_traces(path: str | Path) -> Iterator[EpisodeTrace]:
    """Validated episodes of a JSONL trace file."""
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise TraceFileError(f"{path}: cannot open trace file ({exc.strerror})") from None
    with handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield EpisodeTrace.model_validate_json(line)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "line"
                raise TraceFileError(f"{path}:{lineno}: {where}: {first['msg']}") from None


def render_index(episodes: list[EpisodeTrace]):
    """A rich table listing the episodes of a trace file."""
    from rich.table import Table

    table = Table(title="episodes")
    for column in (
        "question",
        "seed",
        "answer",
        "gold",
        "correct",
        "tokens",
        "branches",
        "steps",
        "reason",
    ):
        table.add_column(column, overflow="fold")
    for e in episodes:
        table.add_row(
            str(e.question),
            str(e.seed),
            str(e.answer),
            e.gold,
            "✓" if e.correct else "✗",
            f"{e.tokens:,}",
            str(e.branches),
            str(len(e.steps)),
            e.error or e.reason,
        )
    return table


def render_episode(episode: EpisodeTrace):
    """A rich renderable of one episode: header, then one line per action."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    outcome = "[green]correct[/]" if episode.correct else "[red]wrong[/]"
    header = Text.from_markup(
        f"[bold]{episode.env}[/] · {episode.controller} ({episode.setting}) · question "
        f"{episode.question} · seed {episode.seed}\nanswer {episode.answer!r} vs gold "
        f"{episode.gold!r}: {outcome} · {episode.tokens:,} tokens · {episode.branches} branches\n"
        f"stop: {episode.error or episode.reason or '-'}"
    )
    table = Table(show_edge=False)
    for column in ("#", "action", "branches → revealed", "finished", "tokens"):
        table.add_column(column, overflow="fold")
    for n, step in enumerate(episode.steps):
        if step.action == "note":
            shown = " ".join(str(r) for r in step.revealed)
        elif step.action in ("prune", "charge_again"):
            shown = ", ".join(map(str, step.ids))
        else:
            shown = ", ".join(f"{i}→{r}" for i, r in zip(step.ids, step.revealed, strict=False))
        table.add_row(
            str(n), step.action, shown, ", ".join(map(str, step.finished)), f"{step.tokens:,}"
        )
    parts = [header, table]
    if episode.traceback:
        lines = ["Traceback (controller code, innermost last):"]
        for frame in episode.traceback:
            lines.append(f'  File "{frame.file}", line {frame.line}, in {frame.function}')
            if frame.code:
                lines.append(f"    {frame.code}")
        parts.append(Text("\n".join(lines), style="red"))
    return Group(*parts)
