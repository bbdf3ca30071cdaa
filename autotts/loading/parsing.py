"""Parsing controller source that may be untrusted: every failure of the parser is a
``SyntaxError``, so that no caller is surprised by another exception type."""

from __future__ import annotations

import ast


def parse_source(source: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse``, where source too deeply nested or too large for the parser (a
    ``RecursionError`` or ``MemoryError`` in the parser) is a ``SyntaxError`` like any other
    unparsable source."""
    try:
        return ast.parse(source, filename)
    except (RecursionError, MemoryError, ValueError) as exc:
        reason = "too deeply nested or too large to parse"
        if isinstance(exc, ValueError):
            reason = str(exc)
        raise SyntaxError(reason, (filename, 1, 0, "")) from None
