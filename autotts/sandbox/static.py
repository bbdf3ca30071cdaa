"""The static check: a fast first filter on untrusted controller source.

It gives an LLM proposer precise feedback (which import, which name, which line) before any
process starts. It is *not* the security boundary — a Python-level check can be walked
around; the boundary is the operating system (:mod:`autotts.sandbox.isolation`) and the
parent's own replay of every action log (:mod:`autotts.sandbox.protocol`).
"""

from __future__ import annotations

import ast

import autotts

from ..loading.controller_files import REFERENCE_HELPERS
from ..loading.parsing import parse_source

SAFE_MODULES = frozenset(
    {
        "__future__",
        "abc",
        "bisect",
        "collections",
        "copy",
        "dataclasses",
        "enum",
        "fractions",
        "functools",
        "heapq",
        "itertools",
        "math",
        "operator",
        "re",  # (AutoTTS-API method files normalise answers with it)
        "statistics",
        "typing",
    }
)
# Numeric libraries a candidate may import (AutoTTS-API method files use them): the worker
# imports exactly the modules a candidate names before it locks itself down.
NUMERIC_MODULES = frozenset({"numpy", "scipy"})
# (and the AutoTTS reference's helper module, for which autotts.loading.autotts_paper_api stands in)
IMPORTABLE = SAFE_MODULES | NUMERIC_MODULES | set(REFERENCE_HELPERS)
# the controller API of autotts: its public names, minus the engine/evaluator ones it loads lazily
AUTOTTS_NAMES = frozenset(autotts.__all__) - frozenset(autotts._LAZY)
FORBIDDEN_CALLS = frozenset(
    {
        "eval",
        "exec",
        "compile",
        "open",
        "__import__",
        "globals",
        "locals",
        "vars",
        "getattr",
        "setattr",
        "delattr",
        "input",
        "breakpoint",
        "help",
        "memoryview",
        "exit",
        "quit",
    }
)
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "gi_frame",
        "gi_code",
        "cr_frame",
        "ag_frame",
        "f_back",
        "f_locals",
        "f_globals",
        "f_builtins",
        "f_code",
        "tb_frame",
        "tb_next",
        "func_globals",
    }
)
# Modules no controller needs that the allowed ones reach (``numpy.f2py.os``,
# ``numpy.testing``): refused as a module path part, an imported name or an attribute
SYSTEM_NAMES = frozenset(
    {
        "os", "sys", "subprocess", "ctypes", "ctypeslib", "gc", "socket", "shutil", "signal",
        "threading", "_thread", "importlib", "builtins", "inspect", "io", "pathlib", "tempfile",
        "pickle", "marshal", "f2py", "distutils", "testing", "_pytesttester", "platform",
    }
)  # fmt: skip
# The AutoTTS reference Question's one underscored attribute its methods read (a property of
# autotts.loading.autotts_paper_api.LegacyQuestion)
REFERENCE_ATTRIBUTES = frozenset({"_cost_per_branch"})
ALLOWED_DUNDERS = frozenset({"__init__", "__getitem__", "__len__", "__contains__", "__name__"})


def static_problems(source: str, filename: str = "candidate.py") -> list[str]:
    """Reasons the source may not run in the sandbox (empty when it passes)."""
    try:
        tree = parse_source(source, filename)
    except SyntaxError as exc:
        return [f"{filename}:{exc.lineno}: syntax error: {exc.msg}"]
    problems: list[str] = []

    def bad(node: ast.AST, what: str) -> None:
        problems.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if (parts[0] not in IMPORTABLE and alias.name != "autotts") or (
                    SYSTEM_NAMES.intersection(parts)
                ):
                    bad(node, f"import of {alias.name!r} is not allowed")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            named = {*module.split("."), *(alias.name for alias in node.names)}
            if SYSTEM_NAMES & named and module.split(".")[0] in IMPORTABLE:
                bad(node, f"importing {sorted(SYSTEM_NAMES & named)[0]!r} is not allowed")
            elif module == "autotts":
                for alias in node.names:
                    if alias.name not in AUTOTTS_NAMES:
                        bad(node, f"'from autotts import {alias.name}' is not allowed")
            elif module.split(".")[0] not in IMPORTABLE or node.level:
                bad(node, f"import from {module or '.'!r} is not allowed")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_CALLS:
            bad(node, f"use of {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if attr in ("format", "format_map"):
                bad(node, "str.format can reach attributes from inside a string; use an f-string")
            elif attr in FORBIDDEN_ATTRIBUTES or attr in SYSTEM_NAMES:
                bad(node, f"attribute {attr!r} is not allowed")
            elif attr.startswith("__") and attr.endswith("__"):
                if attr not in ALLOWED_DUNDERS:
                    bad(node, f"attribute {attr!r} is not allowed")
            elif (
                attr.startswith("_")
                and attr not in REFERENCE_ATTRIBUTES
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                bad(node, f"private attribute {attr!r} of another object is not allowed")
    return problems


def numeric_imports(source: str) -> list[str]:
    """The modules of :data:`NUMERIC_MODULES` the source imports, submodules included
    (``from scipy import stats`` names ``scipy.stats``): what the worker must import before
    the file system closes. Unparsable source names none."""
    try:
        tree = parse_source(source)
    except SyntaxError:
        return []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return sorted(n for n in names if n.split(".")[0] in NUMERIC_MODULES)
