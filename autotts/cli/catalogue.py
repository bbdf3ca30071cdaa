"""What a newcomer asks first: ``autotts --version`` and ``autotts controllers`` (every
built-in controller with its description, parameters and β schedule)."""

from __future__ import annotations

import inspect
import json
from typing import Annotated

import typer
from rich.table import Table

from .common import JsonOption, console

SCHEDULE_POINTS = (0.0, 0.5, 1.0)


def _show_version(value: bool) -> None:
    if value:
        from .. import __version__

        console.print(f"autotts {__version__}", highlight=False)
        raise typer.Exit()


def _parameters(cls) -> list[str]:
    """``run``'s parameters after ``state``, with their defaults where it gives any."""
    params = list(inspect.signature(cls.run).parameters.values())[2:]
    return [
        p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
        for p in params
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _schedule_text(schedule: dict) -> str:
    """One line per parameter: ``n: 1 → 8 → 64`` where β moves it, ``window: 8`` where not."""
    lines = []
    for key in schedule["0"]:
        values = list(dict.fromkeys(_value(schedule[b].get(key)) for b in schedule))
        lines.append(f"{key}: {' → '.join(values) if len(values) > 1 else values[0]}")
    return "\n".join(lines)


def catalogue() -> list[dict]:
    """One entry per built-in controller: ``name``, ``file``, ``description``, ``parameters``
    and ``schedule`` (its parameters at β = 0, 0.5 and 1), or ``error`` for a file that does
    not load."""
    from ..loading.controller_files import builtin_controllers, load_controller_class

    entries = []
    for name, path in builtin_controllers().items():
        entry = {"name": name, "file": str(path)}
        try:
            cls = load_controller_class(path)
            entry["description"] = cls.description or (inspect.getdoc(cls) or "").split("\n")[0]
            entry["parameters"] = _parameters(cls)
            entry["schedule"] = {f"{b:g}": dict(cls.schedule(b)) for b in SCHEDULE_POINTS}
        except Exception as exc:  # noqa: BLE001 - listed, not fatal
            entry["error"] = f"{type(exc).__name__}: {exc}"
        entries.append(entry)
    return entries


def register(app: typer.Typer) -> None:
    @app.callback()
    def _main(
        version: Annotated[
            bool,
            typer.Option(
                "--version", callback=_show_version, is_eager=True, help="Print the version."
            ),
        ] = False,
    ) -> None:
        """autotts: discover, evaluate and compare test-time-scaling controllers on replay
        environments."""

    @app.command()
    def controllers(as_json: JsonOption = False) -> None:
        """List the built-in controllers: name, description, parameters and β schedule
        (any of them runs as `autotts evaluate NAME`)."""
        entries = catalogue()
        if as_json:
            console.print_json(json.dumps(entries))
            return
        table = Table(title=f"{len(entries)} built-in controllers")
        for column in ("name", "description", "parameters at β = 0 → 0.5 → 1"):
            table.add_column(column, overflow="fold")
        for e in entries:
            if "error" in e:
                table.add_row(e["name"], f"[red]does not load: {e['error']}[/]", "")
                continue
            table.add_row(e["name"], e["description"], _schedule_text(e["schedule"]))
        console.print(table)


__all__ = ["catalogue", "register"]
