"""Finding and importing controller files.

A controller is named either by a path to its ``.py`` file or by its short name, looked up in
``controllers/baselines`` and ``controllers/discovered`` of the project (and in ``extra_dirs``).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import types
import warnings
from pathlib import Path

from ..core.contract import Controller
from ..errors import BadInput
from ..utils.project_files import project_dir
from .parsing import parse_source

CONTROLLER_DIRS = (
    project_dir("controllers") / "baselines",
    project_dir("controllers") / "discovered",
)


class ControllerLoadError(BadInput):
    """A controller file that cannot be used; the message names the file and the problem."""


def builtin_controllers() -> dict[str, Path]:
    """Short name → file for every controller shipped in ``controllers/``."""
    found: dict[str, Path] = {}
    for directory in CONTROLLER_DIRS:
        for path in sorted(directory.glob("*.py")):
            if not path.name.startswith("_"):
                found.setdefault(path.stem.replace("_", "-"), path)
    return found


def split_selector(target: str | Path) -> tuple[str | Path, str | None]:
    """``"methods.py:ASCMethod"`` → ``("methods.py", "ASCMethod")``: a file holding several
    classes (AutoTTS-API method files) names the one to run after a colon."""
    head, sep, name = str(target).rpartition(":")
    if sep and head.endswith(".py") and name.isidentifier():
        return head, name
    return target, None


def resolve_controller_path(target: str | Path) -> Path:
    """A controller path or short name (``cmc``, ``parallel-probe``) → its file."""
    target = split_selector(target)[0]
    path = Path(target)
    if path.suffix in (".py", *CONTROLLER_FILE_TYPES) or path.exists():
        if not path.is_file():
            raise ControllerLoadError(f"{path}: controller file not found")
        return path.resolve()
    known = builtin_controllers()
    key = str(target).replace("_", "-")
    if key in known:
        return known[key]
    close = difflib.get_close_matches(key, known, n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ControllerLoadError(
        f"unknown controller {str(target)!r}: not a file, and not one of "
        f"{', '.join(sorted(known))}{hint}"
    )


# Controller files other than Python, by suffix: "module:function" entry points (as in
# Gymnasium's registry) taking the file's path and returning its Controller subclass. Loaded
# on first use, so this module depends on none of them.
CONTROLLER_FILE_TYPES: dict[str, str] = dict.fromkeys(
    (".yaml", ".yml", ".json"), "autotts.collab.execute:graph_file_controller"
)
GRAPH_SUFFIXES = tuple(CONTROLLER_FILE_TYPES)


def register_controller_file_type(suffix: str, entry_point: str) -> None:
    """Let files ending in ``suffix`` be controllers: ``entry_point`` (``"module:function"``)
    maps such a file's path to its Controller subclass (raising ControllerLoadError)."""
    if not suffix.startswith(".") or ":" not in entry_point:
        raise ValueError("register_controller_file_type('.ext', 'package.module:function')")
    CONTROLLER_FILE_TYPES[suffix] = entry_point


def load_controller_class(target: str | Path) -> type[Controller]:
    """Import a controller file and return its single :class:`Controller` subclass (a
    collaboration graph file, ``.yaml``/``.yml``/``.json``, gives its graph controller)."""
    path = resolve_controller_path(target)
    if path.suffix in CONTROLLER_FILE_TYPES:
        module, _, function = CONTROLLER_FILE_TYPES[path.suffix].partition(":")
        return getattr(importlib.import_module(module), function)(path)
    if str(path) not in _TRUSTED_BY_USER and _is_run_candidate(path):
        raise UntrustedCode(_untrusted_message(path))
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ControllerLoadError(f"{path}: cannot be read ({exc})") from None
    return controller_class_from_source(source, path, split_selector(target)[1])


class UntrustedCode(ControllerLoadError):
    """A controller file marked as LLM-written was about to run in a trusted process."""


_TRUSTED_BY_USER: set[str] = set()  # marked files the user chose to run in process


def trust_marked_files(targets) -> None:
    """Let the marked controller files ``targets`` run in this process (and in the processes
    it forks): the user's explicit choice (``--no-sandbox``), never a default."""
    for target in targets:
        if isinstance(target, str | Path) and is_marked_untrusted(target):
            _TRUSTED_BY_USER.add(str(resolve_controller_path(target)))


def _untrusted_message(origin) -> str:
    return (
        f"{origin}: LLM-written (marked {UNTRUSTED_MARK!r}, or a discovery run's candidate), so "
        "it never runs in this process: `autotts evaluate`, `compare` and `check` run it in "
        "the sandbox; to trust it, pass --no-sandbox (or delete the mark)"
    )


def has_untrusted_mark(source: str) -> bool:
    """Whether controller source carries :data:`UNTRUSTED_MARK` in its first lines (a byte-order
    mark or leading blanks before it do not hide it)."""
    return any(
        line.lstrip("\ufeff \t").startswith(UNTRUSTED_MARK) for line in source.splitlines()[:5]
    )


def controller_class_from_source(
    source: str, origin: str | Path, select: str | None = None, *, in_sandbox: bool = False
) -> type[Controller]:
    """Execute controller source as a fresh module and return its single Controller subclass,
    or the class named ``select``. A file of AutoTTS-API methods (no Controller subclass) gives
    its method wrapped by :mod:`autotts.loading.autotts_paper_api` (``select`` picks one of several).
    ``origin`` names the file in messages and tracebacks.

    Source marked as LLM-written (:data:`UNTRUSTED_MARK`) is executed only where
    ``in_sandbox`` (the sandbox worker) or where the user trusted the file
    (:func:`trust_marked_files`); anywhere else it raises :class:`UntrustedCode` before a line
    of it runs: every path that loads a controller comes through here."""
    if not in_sandbox and has_untrusted_mark(source) and str(origin) not in _TRUSTED_BY_USER:
        raise UntrustedCode(_untrusted_message(origin))
    if select is not None:
        source = without_broken_classes(source, select, origin)
    digest = hashlib.sha1(f"{origin}\0{source}".encode()).hexdigest()[:10]
    module_name = f"autotts_controller_{Path(str(origin)).stem.replace('-', '_')}_{digest}"
    module = types.ModuleType(module_name)
    module.__file__ = str(origin)
    sys.modules[module_name] = module
    try:
        with _reference_helpers(source):
            exec(compile(source, str(origin), "exec"), module.__dict__)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise ControllerLoadError(f"{origin}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ControllerLoadError(
            f"{origin}: importing failed: {type(exc).__name__}: {exc}"
        ) from None
    classes = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Controller) and obj.__module__ == module_name
    ]
    if select is not None or not classes:
        legacy = _select_legacy(module, module_name, classes, select, origin, source)
        if legacy is not None:
            return legacy
    if len(classes) != 1:
        what = "no" if not classes else f"{len(classes)} ({', '.join(c.__name__ for c in classes)})"
        raise ControllerLoadError(
            f"{origin}: defines {what} Controller subclasses; a controller file defines exactly one "
            "(class MyController(autotts.Controller) with name, schedule(beta) and run(state, ...))"
        )
    cls = classes[0]
    if getattr(cls, "__abstractmethods__", None):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise ControllerLoadError(f"{origin}: {cls.__name__} does not implement {missing}")
    if not cls.name:
        cls.name = Path(str(origin)).stem.replace("_", "-")
    return cls


_ANNOUNCED: set[tuple[str, int, str]] = set()
MAX_LEFT_OUT = 16  # broken definitions left out of one file (each costs a parse of the file)
_TOP_LEVEL_DEFINITION = re.compile(r"(?:async\s+def|def|class)\s+(\w+)")


def without_broken_classes(source: str, select: str, origin: str | Path) -> str:
    """``source`` with the top-level classes and functions that do not parse blanked out
    (line numbers kept), so that ``select`` loads from a file whose other parts are unfinished
    (the AutoTTS repository's ``reference_methods.py`` ends in a stub with no body). Each
    part left out is announced with a warning at its file and line, naming the class.
    ``source`` comes back unchanged when it parses, or when ``select`` itself (or code outside
    a definition) is what does not parse, or more than :data:`MAX_LEFT_OUT` definitions do:
    then loading reports the syntax error."""
    lines = source.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _TOP_LEVEL_DEFINITION.match(line)]
    left_out: list[tuple[int, str]] = []
    for _ in range(min(len(starts), MAX_LEFT_OUT) + 1):
        try:
            parse_source("".join(lines))
            break
        except SyntaxError as exc:
            error = exc
        first = max((i for i in starts if i < (error.lineno or 0)), default=None)
        name = None if first is None else _TOP_LEVEL_DEFINITION.match(lines[first])[1]
        if name is None or name == select or len(left_out) == MAX_LEFT_OUT:
            return source
        end = min((i for i in starts if i > first), default=len(lines))
        while first > 0 and lines[first - 1].startswith("@"):
            first -= 1
        left_out.append((first, f"{name} does not parse ({error.msg}, line {error.lineno})"))
        lines[first:end] = ["\n"] * (end - first)
        starts = [i for i in starts if not first <= i < end]
    for first, problem in left_out:
        if (str(origin), first, select) not in _ANNOUNCED:  # once per process (and worker)
            _ANNOUNCED.add((str(origin), first, select))
            message = f"{problem}; left out to load {select}"
            warnings.warn_explicit(message, UserWarning, str(origin), first + 1)
    return "".join(lines)


BASE_NAME = "LLMDesignedMethod"
# The class the AutoTTS search has its agent write next to the baselines it is given
SEARCHED_METHOD = "OptimalController"


# The AutoTTS reference's modules a method file may import (its base class and trace recorder;
# its Question, for type hints), and ours standing in for both
REFERENCE_HELPERS = ("controller_api", "data_loader")


@contextlib.contextmanager
def _reference_helpers(source: str):
    """While ``source`` runs: ``import controller_api`` (or ``data_loader``) gets
    :mod:`autotts.loading.autotts_paper_api` when no such module is installed (the sandbox worker puts it
    in place before lock-down)."""
    added = [
        name
        for name in REFERENCE_HELPERS
        if name in source and name not in sys.modules and importlib.util.find_spec(name) is None
    ]
    for name in added:
        sys.modules[name] = importlib.import_module("autotts.loading.autotts_paper_api")
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _solves(obj: object) -> bool:
    """A concrete class with a ``solve`` method (and not a controller)."""
    return (
        isinstance(obj, type)
        and not issubclass(obj, Controller)
        and callable(getattr(obj, "solve", None))
        and not inspect.isabstract(obj)
    )


def is_legacy_method(obj: object) -> bool:
    """Whether ``obj`` is an AutoTTS-API method class (derives from a class named
    ``LLMDesignedMethod``, has ``solve``, is concrete). Named after a colon, any class with
    ``solve`` runs as one, whatever its base."""
    return (
        _solves(obj)
        and obj.__name__ != BASE_NAME
        and any(base.__name__ == BASE_NAME for base in obj.__mro__[1:])
    )


def _select_legacy(module, module_name, classes, select, origin, source):
    """The ``select``-ed class (wrapped if it is an AutoTTS-API method), the only method of an
    AutoTTS-API file (else its ``OptimalController``), or None when the file is an ordinary
    controller file."""
    own = {n: o for n, o in vars(module).items() if getattr(o, "__module__", "") == module_name}
    methods = [n for n, o in own.items() if is_legacy_method(o)]
    if select is not None:
        chosen = own.get(select)
        if chosen in classes:
            return chosen
        if select in methods or _solves(chosen):  # named: any concrete class with solve()
            return _wrap(chosen, source)
        raise ControllerLoadError(
            f"{origin}: no controller or AutoTTS-API method named {select!r} (it defines "
            f"{', '.join(c.__name__ for c in classes) or 'no controllers'}; methods: "
            f"{', '.join(methods) or 'none'})"
        )
    if len(methods) == 1:
        return _wrap(own[methods[0]], source)
    if SEARCHED_METHOD in methods:  # what the reference's search evaluates in such a file
        return _wrap(own[SEARCHED_METHOD], source)
    if methods:
        raise ControllerLoadError(
            f"{origin}: defines AutoTTS-API methods {', '.join(methods)}; name one as "
            f"{Path(str(origin)).name}:{methods[0]}"
        )
    return None


def _wrap(method_class: type, source: str) -> type[Controller]:
    from .autotts_paper_api import legacy_controller_class

    return legacy_controller_class(method_class, source)


# Put at the top of LLM-written controller files (by ``autotts export``): such a file
# runs only in the sandbox unless the user says to trust it.
UNTRUSTED_MARK = "# autotts: untrusted"


def mark_untrusted(source: str, origin: str) -> str:
    """``source`` with the mark as its first line (``origin``: who wrote it)."""
    return (
        f"{UNTRUSTED_MARK} ({origin}): `autotts evaluate` and `autotts check` run this file "
        "in the sandbox unless told to trust it\n" + source
    )


def without_untrusted_mark(source: str) -> str:
    """``source`` less the mark line :func:`mark_untrusted` put first (to show it to a model,
    or to mark it again under a new header); unmarked source is returned as it is."""
    first, newline, rest = source.partition("\n")
    return rest if first.lstrip("\ufeff").startswith(UNTRUSTED_MARK) else source


def _is_run_candidate(path: Path) -> bool:
    """A file anywhere under a discovery run's candidates (``RUN/candidates/``) or a coding
    agent's workspaces (``RUN/agent/``, at any depth), ``RUN`` holding the run's
    ``history.jsonl``: LLM-written whatever its first lines say (runs from before candidates
    were written marked left them unmarked)."""
    path = path.resolve()
    for folder in path.parents:
        if folder.name in ("candidates", "agent") and (folder.parent / "history.jsonl").is_file():
            return True
    return False


def is_marked_untrusted(target: str | Path) -> bool:
    """Whether the controller file (path or built-in name) carries the mark in its first
    lines; names that resolve to no file are not marked (loading reports them), nor are the
    data files of :data:`CONTROLLER_FILE_TYPES`, and controllers given as Python objects are
    not files. A discovery run's candidate file counts as marked even without the mark."""
    if not isinstance(target, str | Path):
        return False
    try:
        path = resolve_controller_path(target)
    except ControllerLoadError:
        return False
    if path.suffix in CONTROLLER_FILE_TYPES:  # data read by trusted code, not code
        return False
    if _is_run_candidate(path):
        return True
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = [handle.readline() for _ in range(5)]
    except OSError:
        return False
    return has_untrusted_mark("".join(head))


def load_controller(target: str | Path | type[Controller] | Controller) -> Controller:
    """The controller of a file or short name (imported and instantiated), of a
    ``Controller`` subclass (instantiated), or an instance (returned as it is)."""
    if isinstance(target, Controller):
        return target
    if isinstance(target, type) and issubclass(target, Controller):
        try:
            return target()
        except Exception as exc:
            raise ControllerLoadError(
                f"{target.__name__}() failed: {type(exc).__name__}: {exc}"
            ) from None
    cls = load_controller_class(target)
    try:
        return cls()
    except Exception as exc:
        raise ControllerLoadError(
            f"{resolve_controller_path(target)}: {cls.__name__}() failed: {type(exc).__name__}: {exc}"
        ) from None
