"""A discovery run's directory: everything a run produced, append-only and resumable.

Layout::

    RUN/
      config.json              settings of the run (written once; resuming reads it back)
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
``fsync``); a line cut short by a kill is ignored on read and cut off before the next append,
and that round is simply redone. Files of a candidate are written atomically before its
history line, so nothing recorded is ever lost or duplicated.

One process at a time: :meth:`RunDirectory.lock` holds an exclusive lock on ``RUN/.lock``
while a run is created or resumed, so a second ``--resume`` of the same run is refused. A
``history.jsonl`` that disappeared or was emptied is refused on resume, and so is an Optuna
study that disagrees with it (see ``optuna_search``). A full disk is reported with the path.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..loading.controller_files import mark_untrusted, without_untrusted_mark
from ..utils.atomic_files import atomic_write_text

RUNS_DIR = "autotts-runs"  # where runs go without --out (ignored by the project's .gitignore)
_APPENDING = threading.Lock()  # threads of one process (parallel rounds) append in turn


class RunError(BadInput):
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
                f"{run.path} already holds a run; resume it, or choose another run directory"
            )
        with disk_errors(run.path):
            run.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run.path / "config.json", json.dumps(config, indent=2) + "\n")
        run.append({"event": "created", "time": time.time()})
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDirectory:
        run = cls(path)
        if not (run.path / "config.json").is_file():
            raise RunError(f"{run.path}: not a discovery run (no config.json)")
        if not any(r.get("event") == "created" for r in run.records()):
            raise RunError(
                f"{run.path / 'history.jsonl'} is missing or empty, so the run's record is "
                "gone; resuming would redo or double-count its work. Restore the file, or "
                "start a new run elsewhere"
            )
        return run

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunDirectory]:
        """Hold the run for this process; another process holding it raises RunError."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as handle:  # closing it releases the lock
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "?"
                raise RunError(
                    f"{self.path} is in use by another autotts process (pid {owner}); wait for "
                    "it to finish or stop it before resuming"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield self

    @property
    def config(self) -> dict:
        try:
            return json.loads((self.path / "config.json").read_text())
        except json.JSONDecodeError as exc:
            raise RunError(f"{self.path / 'config.json'}: not valid JSON ({exc})") from None

    # --- the append-only history -------------------------------------------------------

    def append(self, record: dict, log: str = "history.jsonl") -> None:
        """Append one JSON line and flush it to disk. A partial last line (left by a kill
        in the middle of a write) is cut off first: it never held a complete record."""
        line = (json.dumps(record, default=_jsonable) + "\n").encode("utf-8")
        path = self.path / log
        with _APPENDING, disk_errors(path), open(path, "ab") as handle:
            _cut_partial_line(handle)
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

    def candidate_source(self, number: int) -> str | None:
        """The LLM-written source of candidate ``number`` as its model wrote it (without the
        untrusted mark it is stored under), or None where it has none (an Optuna trial)."""
        path = self.candidate_dir(number) / "controller.py"
        if not path.is_file():
            return None
        with disk_errors(path):
            return without_untrusted_mark(path.read_text(encoding="utf-8"))

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
        with disk_errors(folder):
            return self._write_candidate(folder, source, params, result, traces)

    def _write_candidate(self, folder: Path, source, params, result, traces) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if source is not None:  # only LLM-written candidates have source: marked untrusted
            origin = f"written by an LLM in {self.path.resolve()}"
            marked = mark_untrusted(without_untrusted_mark(source), origin)
            atomic_write_text(folder / "controller.py", marked)
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
        with disk_errors(self.path / relative):
            return atomic_write_text(
                self.path / relative, json.dumps(data, indent=2, default=_jsonable) + "\n"
            )

    def read_json(self, relative: str) -> Any:
        return json.loads((self.path / relative).read_text())


@contextlib.contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turn a full disk (or quota) into a RunError that names the path."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise RunError(
                f"{path}: no space left on the device ({exc.strerror}); free some space and "
                "resume the run (everything recorded so far is kept)"
            ) from None
        raise


def _cut_partial_line(handle) -> None:
    """Truncate an append-mode binary file back to just after its last newline."""
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return
    with open(handle.name, "rb") as reader:
        reader.seek(max(0, size - 1))
        if reader.read(1) == b"\n":
            return
        position = size
        while position > 0:
            step = min(65536, position)
            reader.seek(position - step)
            chunk = reader.read(step)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                handle.truncate(position - step + newline + 1)
                return
            position -= step
    handle.truncate(0)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)
