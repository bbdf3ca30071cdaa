"""What to evaluate: :class:`RunConfig` (one controller at one point of its sweep) and the
ways to name controllers — spec strings, paths, short names, ``Controller`` classes and
instances — turned into run configurations.

A spec string is ``NAME_OR_PATH[@key=v1,v2,...][@key=v...]``: ``beta`` is the β knob, other
keys override parameters, comma lists sweep (cartesian product); without ``@`` the β grid.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.contract import Controller
from ..errors import BadInput
from .controller_files import split_selector

DEFAULT_BETAS = tuple(round(0.1 * i, 1) for i in range(11))

# A controller as the Python API accepts it: a short name, spec string or path; a Controller
# subclass; or an instance.
ControllerLike = str | Path | type[Controller] | Controller

# The paper's Table 1 (``compare --preset paper``).
PAPER_PRESET = ("sc@n=64", "asc@n=64", "esc@n=64", "parallel-probe@n=64", "cmc@beta=0.5,1.0")
# Every baseline over its β grid, the discovered family, and SC@64 as the budget reference
# (``compare --preset baselines``).
BASELINES_PRESET = (
    "sc@n=64", "sc", "sc-length-weighted", "asc", "esc", "ffs", "short-m-at-k", "dynasor-cot",
    "deepconf", "deepconf@mode=offline@beta=0,0.33,0.67,1", "parallel-probe", "cmc",
    "optuna-family",
)  # fmt: skip  # DeepConf only where every environment carries confidence


@dataclass(frozen=True)
class RunConfig:
    """One controller at one point of its sweep: ``beta`` and/or explicit parameter overrides.
    ``controller`` is a path or short name, or a ``Controller`` class or instance (those run in
    worker processes forked from this one, or in this process when they cannot)."""

    controller: str | type[Controller] | Controller
    label: str = ""
    beta: float | None = None
    overrides: tuple[tuple[str, object], ...] = ()

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        target = self.controller
        if isinstance(target, Controller):
            target = type(target)
        if isinstance(target, type):
            return target.name or target.__name__
        file, selected = split_selector(target)  # "methods.py:ASCMethod": the class names it
        return selected or Path(file).stem.replace("_", "-")

    @property
    def setting(self) -> str:
        """Short human form of the sweep point, e.g. ``β=0.5`` or ``n=64``."""
        parts = [f"β={self.beta:g}"] if self.beta is not None else []
        parts += [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.overrides]
        return ", ".join(parts) or "default"

    @property
    def in_memory(self) -> bool:
        """Whether the controller is a Python object rather than a file."""
        return not isinstance(self.controller, str | Path)


def parse_value(text: str):
    """A spec value: ``true``/``false``, an int, a float, else the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_spec(spec: str, default_betas: Sequence[float] | None = None) -> list[RunConfig]:
    """``NAME_OR_PATH[@key=v1,v2...][@key=v...]`` → RunConfigs (cartesian product of lists);
    ``beta`` is the β knob, other keys override parameters. No ``@``: the β grid."""
    target, *assignments = spec.split("@")
    axes: list[list[tuple[str, object]]] = []
    for assignment in assignments:
        key, sep, values = assignment.partition("=")
        if not sep or not key or not values:
            raise BadInput(
                f"controller spec {spec!r}: expected key=value after '@', got {assignment!r}"
            )
        axes.append([(key.strip(), parse_value(v)) for v in values.split(",")])
    return _sweep(target, axes, default_betas)


def _sweep(target, axes, default_betas) -> list[RunConfig]:
    if not axes:
        axes = [[("beta", b) for b in (default_betas or DEFAULT_BETAS)]]
    configs = []
    for combo in itertools.product(*axes):
        beta = next((v for k, v in combo if k == "beta"), None)
        if beta is not None and (isinstance(beta, bool) or not isinstance(beta, int | float)):
            raise BadInput(f"controller {target}: beta={beta!r} is not a number in [0, 1]")
        beta = None if beta is None else float(beta)
        overrides = tuple((k, v) for k, v in combo if k != "beta")
        configs.append(RunConfig(controller=target, beta=beta, overrides=overrides))
    return configs


def run_configs(
    controllers: ControllerLike | RunConfig | Iterable[ControllerLike | RunConfig],
    betas: Sequence[float] | None = None,
    **grid: Sequence[object],
) -> list[RunConfig]:
    """Run configurations for ``controllers``: one, or a list of, spec strings / paths / short
    names (``"cmc"``, ``"sc@n=8,64"``, ``"mine.py"``), ``Controller`` classes or instances,
    or ready :class:`RunConfig` objects. ``betas`` is the β grid of controllers given without
    an explicit sweep (default 0, 0.1, …, 1); ``grid`` sweeps parameters instead
    (``n=[8, 64]``), as ``@n=8,64`` does in a spec."""
    if isinstance(controllers, str | Path | RunConfig | Controller) or (
        isinstance(controllers, type) and issubclass(controllers, Controller)
    ):
        controllers = [controllers]
    elif not isinstance(controllers, Iterable):
        controllers = [controllers]  # reported below as something that cannot be evaluated
    axes = [[(key, value) for value in values] for key, values in grid.items()]
    configs: list[RunConfig] = []
    for item in controllers:
        if isinstance(item, RunConfig):
            configs.append(item)
        elif isinstance(item, str) and "@" in item:
            if axes:
                raise BadInput(f"controller spec {item!r} sweeps already; drop the grid")
            configs += parse_spec(item, betas)
        elif isinstance(item, str | Path):
            configs += _sweep(str(item), axes, betas)
        elif isinstance(item, Controller) or (
            isinstance(item, type) and issubclass(item, Controller)
        ):
            configs += _sweep(item, axes, betas)
        else:
            raise BadInput(
                f"cannot evaluate {item!r}: give a controller name, spec or path, a "
                "Controller subclass or instance, or a RunConfig"
            )
    if not configs:
        raise BadInput("no controllers to evaluate")
    return list(dict.fromkeys(configs))


def check_configs(
    configs: Sequence[RunConfig], envs: Sequence = (), sandboxed: Sequence[RunConfig] = ()
) -> None:
    """Refuse, before anything runs, configurations that cannot run: an unknown controller
    (with the closest names), β outside [0, 1], a parameter the controller's schedule does
    not define, a value of the wrong kind, or a signal it requires that one of ``envs`` lacks
    (:class:`~autotts.core.signals.MissingSignal`). Controller files are imported for this unless
    they will run ``sandboxed`` or are marked untrusted (those never run in this process: the
    sandbox checks their parameters); one that does not import is left to the evaluation,
    which reports it in its row."""
    from ..core.signals import check_required
    from .controller_files import is_marked_untrusted, load_controller, resolve_controller_path

    schedules: dict = {}
    for config in configs:
        where = f"{config.name} ({config.setting})"
        if config.beta is not None and not 0.0 <= config.beta <= 1.0:
            raise BadInput(f"{where}: beta must lie in [0, 1], got {config.beta:g}")
        if not config.in_memory:
            resolve_controller_path(config.controller)  # unknown names raise, with suggestions
            if config in sandboxed or is_marked_untrusted(config.controller):
                continue
        key = config.controller if not isinstance(config.controller, Controller) else id(config)
        if key not in schedules:
            try:
                controller = load_controller(config.controller)
                schedules[key] = dict(
                    controller.schedule(1.0 if config.beta is None else config.beta)
                )
            except Exception:  # the evaluation reports it in the row
                schedules[key] = None
            else:
                for env in envs:
                    check_required(controller, env)
        defaults = schedules[key]
        if defaults is None:
            continue
        for name, value in config.overrides:
            if name not in defaults:
                raise BadInput(
                    f"{where}: {config.name} has no parameter {name!r}; its schedule defines "
                    f"{', '.join(sorted(defaults)) or 'none'}"
                )
            default = defaults[name]
            if isinstance(default, int | float) and not isinstance(value, int | float):
                raise BadInput(
                    f"{where}: {name}={value!r} is not a number (the schedule gives "
                    f"{name}={default!r})"
                )


def refuse_unloadable(configs: Sequence[RunConfig], sandbox: bool | None = None) -> None:
    """Refuse, before any episode runs, a controller file that cannot load, with one
    :class:`~autotts.loading.controller_files.ControllerLoadError` at its file and line. Files that will run in
    the sandbox (all with ``sandbox=True``) and marked files are only parsed here, never run;
    the rest are imported, as their evaluation would."""
    from .controller_files import (
        ControllerLoadError,
        is_marked_untrusted,
        load_controller_class,
        resolve_controller_path,
    )
    from .parsing import parse_source

    for target in dict.fromkeys(c.controller for c in configs if not c.in_memory):
        if sandbox or is_marked_untrusted(target):
            path = resolve_controller_path(target)
            if path.suffix != ".py":
                continue  # graph files are data, read by the sandbox
            try:
                parse_source(path.read_text(encoding="utf-8"), str(path))
            except SyntaxError as exc:
                raise ControllerLoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
        else:
            load_controller_class(target)


def without_missing_signals(
    configs: Sequence[RunConfig], envs: Sequence, sandbox: bool | None = None
) -> tuple[list[RunConfig], list[str]]:
    """``configs`` minus those whose controller requires a signal one of ``envs`` lacks (a
    preset then runs the rest), and one note per controller left out. Files that will run in
    the sandbox (all with ``sandbox=True``) are kept unread."""
    from ..core.signals import MissingSignal, check_required
    from .controller_files import is_marked_untrusted, load_controller

    kept, notes = [], {}
    for config in configs:
        if not config.in_memory and (sandbox or is_marked_untrusted(config.controller)):
            kept.append(config)
            continue
        try:
            controller = load_controller(config.controller)
            for env in envs:
                check_required(controller, env)
        except MissingSignal as exc:
            notes.setdefault(config.name, f"{config.name} left out: {exc}")
            continue
        except Exception:  # noqa: BLE001 - the evaluation reports it in the row
            pass
        kept.append(config)
    return kept, list(notes.values())


__all__ = [
    "BASELINES_PRESET",
    "DEFAULT_BETAS",
    "PAPER_PRESET",
    "ControllerLike",
    "check_configs",
    "RunConfig",
    "parse_spec",
    "parse_value",
    "refuse_unloadable",
    "run_configs",
    "without_missing_signals",
]
