"""Atomic file writes (a reader never sees a half-written output) and readers of small
configuration, JSON-lines and JSON-array files whose errors name the file and line."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place. The file
    gets the permissions the umask gives a new file (``mkstemp`` alone would make it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_yaml_or_json(path: str | Path, error: type[Exception], what: str):
    """Parse a ``.yaml``/``.yml`` or JSON file; problems raise ``error`` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read the {what} ({exc})") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise error(f"{path}: not valid YAML: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise error(f"{path}: not valid JSON: {exc}") from None


def json_lines(path: Path, text: str, error: type[Exception]):
    """``(line number, value)`` of every non-blank line of JSON-lines ``text`` read from
    ``path``; a line that is not JSON raises ``error`` naming the file, line and column."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise _not_json(error, path, number, exc) from None


def _not_json(error: type[Exception], path: Path, line: int, exc: json.JSONDecodeError):
    return error(f"{path}, line {line}: not valid JSON at column {exc.colno}: {exc.msg}")


def json_records(path: Path, text: str, error: type[Exception]):
    """``(where, value)`` of every record of ``text`` read from ``path``: each line of JSON
    lines (``where`` is ``"<path>, line N"``), or each item of a file holding one JSON array
    (``"<path>, item N"``; ``json.dump(records, f, indent=2)``). Bad JSON raises ``error``
    naming the file, line and column."""
    if not text.lstrip().startswith("["):
        for number, value in json_lines(path, text, error):
            yield f"{path}, line {number}", value
        return
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _not_json(error, path, exc.lineno, exc) from None
    for number, value in enumerate(items, 1):
        yield f"{path}, item {number}", value
