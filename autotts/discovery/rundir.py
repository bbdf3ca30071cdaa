"""A discovery run's directory: everything a run produced, append-only and resumable.

Layout::

    RUN/
      config.json              settings of the run (written once; --resume reads it back)
      history.jsonl            append-only log, one JSON object per line: rounds, stages
      candidates/NNNN/         one folder per candidate (round)
        controller.py          its source (LLM candidates) or params.json (Optuna trials)
        result.json            its metrics per environment and β
        traces.jsonl.gz        its execution traces (seed 0 of every question)
      messages.jsonl           the LLM agent's messages (LLM path)
      optuna.db                the Optuna study (SQLite unless another storage URL is set)
      family/ , heldout.json   compression output and held-out judgement
      report.md / report.html  ``autotts report RUN``

``history.jsonl`` is the source of truth: a round counts once its line is written (with
``fsync``); a line cut short by a kill is ignored on read, and that round is simply redone.
Files of a candidate are written atomically before its history line, so nothing recorded is
ever lost or duplicated.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..files import atomic_write_text


class RunError(ValueError):
    """A run directory that cannot be created or resumed (the message says why)."""


class RunDirectory:
    """Reads and appends the records of one discovery run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # --- creation / resumption ---------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, config: dict) -> RunDirectory:
        run = cls(path)
        if (run.path / "config.json").exists():
            raise RunError(
                f"{run.path} already holds a run; continue it with --resume {run.path} "
                "or choose another --out"
            )
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.path / "config.json", json.dumps(config, indent=2) + "\n")
        run.append({"event": "created", "time": time.time()})
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDirectory:
        run = cls(path)
        if not (run.path / "config.json").is_file():
            raise RunError(f"{run.path}: not a discovery run (no config.json)")
        return run

    @property
    def config(self) -> dict:
        try:
            return json.loads((self.path / "config.json").read_text())
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.path / 'config.json'}: not valid JSON ({exc})") from None

    # --- the append-only history -------------------------------------------------------

    def append(self, record: dict, log: str = "history.jsonl") -> None:
        """Append one JSON line and flush it to disk."""
        line = json.dumps(record, default=_jsonable) + "\n"
        path = self.path / log
        # a previous kill may have left a partial last line: start on a fresh line
        needs_newline = path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
        with open(path, "a", encoding="utf-8") as handle:
            if needs_newline:
                handle.write("\n")
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def records(self, log: str = "history.jsonl") -> list[dict]:
        """Every complete line of a log (a truncated or corrupt line is skipped)."""
        path = self.path / log
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def rounds(self) -> list[dict]:
        """Completed rounds in order (one per candidate)."""
        return [r for r in self.records() if r.get("event") == "round"]

    def stage_done(self, name: str) -> dict | None:
        """The record of a completed stage, or None."""
        for r in self.records():
            if r.get("event") == "stage" and r.get("name") == name:
                return r
        return None

    def finish_stage(self, name: str, **data: Any) -> None:
        self.append({"event": "stage", "name": name, "time": time.time(), **data})

    # --- candidate files ---------------------------------------------------------------

    def candidate_dir(self, number: int) -> Path:
        return self.path / "candidates" / f"{number:04d}"

    def write_candidate(
        self,
        number: int,
        *,
        source: str | None = None,
        params: dict | None = None,
        result: dict | None = None,
        traces: Iterable[dict] = (),
    ) -> Path:
        folder = self.candidate_dir(number)
        folder.mkdir(parents=True, exist_ok=True)
        if source is not None:
            atomic_write_text(folder / "controller.py", source)
        if params is not None:
            atomic_write_text(folder / "params.json", json.dumps(params, indent=2) + "\n")
        if result is not None:
            atomic_write_text(
                folder / "result.json", json.dumps(result, indent=2, default=_jsonable) + "\n"
            )
        lines = [json.dumps(t, default=_jsonable) for t in traces]
        if lines:
            tmp = folder / ".traces.jsonl.gz.tmp"
            with gzip.open(tmp, "wt", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
            os.replace(tmp, folder / "traces.jsonl.gz")
        return folder

    def write_json(self, relative: str, data: Any) -> Path:
        return atomic_write_text(
            self.path / relative, json.dumps(data, indent=2, default=_jsonable) + "\n"
        )

    def read_json(self, relative: str) -> Any:
        return json.loads((self.path / relative).read_text())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)
