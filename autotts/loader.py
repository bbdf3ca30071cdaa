"""Finding and importing controller files.

A controller is named either by a path to its ``.py`` file or by its short name, looked up in
``controllers/baselines`` and ``controllers/discovered`` of the project (and in ``extra_dirs``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from .contract import Controller
from .store import PROJECT_ROOT

CONTROLLER_DIRS = (
    PROJECT_ROOT / "controllers" / "baselines",
    PROJECT_ROOT / "controllers" / "discovered",
)


class ControllerLoadError(ValueError):
    """A controller file that cannot be used; the message names the file and the problem."""


def builtin_controllers() -> dict[str, Path]:
    """Short name → file for every controller shipped in ``controllers/``."""
    found: dict[str, Path] = {}
    for directory in CONTROLLER_DIRS:
        for path in sorted(directory.glob("*.py")):
            if not path.name.startswith("_"):
                found.setdefault(path.stem.replace("_", "-"), path)
    return found


def resolve_controller_path(target: str | Path) -> Path:
    """A controller path or short name (``cmc``, ``parallel-probe``) → its file."""
    path = Path(target)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise ControllerLoadError(f"{path}: controller file not found")
        return path.resolve()
    known = builtin_controllers()
    key = str(target).replace("_", "-")
    if key in known:
        return known[key]
    raise ControllerLoadError(
        f"unknown controller {str(target)!r}: not a file, and not one of {', '.join(sorted(known))}"
    )


def load_controller_class(target: str | Path) -> type[Controller]:
    """Import a controller file and return its single :class:`Controller` subclass."""
    path = resolve_controller_path(target)
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"autotts_controller_{path.stem.replace('-', '_')}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ControllerLoadError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise ControllerLoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ControllerLoadError(
            f"{path}: importing failed: {type(exc).__name__}: {exc}"
        ) from None
    classes = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Controller) and obj.__module__ == module_name
    ]
    if len(classes) != 1:
        what = "no" if not classes else f"{len(classes)} ({', '.join(c.__name__ for c in classes)})"
        raise ControllerLoadError(
            f"{path}: defines {what} Controller subclasses; a controller file defines exactly one "
            "(class MyController(autotts.Controller) with name, schedule(beta) and run(state, ...))"
        )
    cls = classes[0]
    if getattr(cls, "__abstractmethods__", None):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise ControllerLoadError(f"{path}: {cls.__name__} does not implement {missing}")
    if not cls.name:
        cls.name = path.stem.replace("_", "-")
    return cls


def load_controller(target: str | Path) -> Controller:
    """Import a controller file and instantiate its controller."""
    cls = load_controller_class(target)
    try:
        return cls()
    except Exception as exc:
        raise ControllerLoadError(
            f"{resolve_controller_path(target)}: {cls.__name__}() failed: {type(exc).__name__}: {exc}"
        ) from None
