"""Commands that read data: ``envs`` (list, fetch) and ``trace`` (show, schema)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import EXIT_FAILED, EnvDirOption, _fail, console

envs_app = typer.Typer(help="List and fetch replay environments.", invoke_without_command=True)
trace_app = typer.Typer(help="Read execution traces.", no_args_is_help=True)


@envs_app.callback()
def envs(ctx: typer.Context, env_dir: EnvDirOption = None) -> None:
    """List the replay environments with their statistics."""
    if ctx.invoked_subcommand is not None:
        return
    from ..store import StoreError, list_environments, load_environment_records, resolve_env_dir

    try:
        root = resolve_env_dir(env_dir)
        infos = list_environments(root)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    table = Table(title=f"replay environments in {root}")
    for column in (
        "id",
        "questions",
        "branches",
        "Δ",
        "mean branch tokens",
        "mean probes",
        "pass@all %",
        "status",
    ):
        table.add_column(column)
    bad = False
    for info in infos:
        try:
            records = load_environment_records(info.env_id, root)
        except StoreError as exc:
            table.add_row(info.env_id, "", "", "", "", "", "", f"[red]{exc}[/]")
            bad = True
            continue
        branches = [b for r in records for b in r.each_branch]
        passed = sum(any(b[2] == r.gold_answer for b in r.each_branch) for r in records)
        table.add_row(
            info.env_id,
            str(len(records)),
            str(len(records[0].each_branch)),
            str(records[0].probe_freq),
            f"{sum(b[1] for b in branches) / len(branches):,.0f}",
            f"{sum(len(b[0]) for b in branches) / len(branches):.1f}",
            f"{100 * passed / len(records):.1f}",
            "[green]ok[/]",
        )
    console.print(table)
    if not infos:
        raise _fail(f"no MODEL/DATASET.json stores in {root}")
    if bad:
        raise typer.Exit(EXIT_FAILED)


@envs_app.command("fetch")
def envs_fetch(
    dest: Annotated[
        Path | None,
        typer.Option(
            help="Where to store them (default: the user cache, searched by every command)."
        ),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="Mirror to download from (default: the pinned AutoTTS commit on GitHub)."
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Environment id to fetch; repeatable (default: all)."),
    ] = None,
) -> None:
    """Download the public replay stores, verify their sha256, resume interrupted downloads."""
    from ..fetch import FetchError, fetch_environments

    def show(outcome) -> None:
        colour = "red" if outcome.status.startswith("failed") else "green"
        console.print(
            f"[{colour}]{outcome.status}[/] {outcome.name} ({outcome.bytes:,} bytes)",
            highlight=False,
        )

    try:
        outcomes = fetch_environments(dest, base_url, only, on_file=show)
    except FetchError as exc:
        raise _fail(str(exc)) from None
    if any(o.status.startswith("failed") for o in outcomes):
        raise typer.Exit(EXIT_FAILED)


@trace_app.command("show")
def trace_show(
    path: Annotated[
        Path, typer.Argument(help="A traces/*.jsonl file written by evaluate/compare.")
    ],
    question: Annotated[
        int | None, typer.Option(help="Question index to show (default: the first episode).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed to show.")] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List the episodes in the file instead.")
    ] = False,
) -> None:
    """Show one episode's action-by-action trace in a readable form."""
    from ..traces import TraceFileError, read_traces, render_episode, render_index

    try:
        episodes = list(read_traces(path))
    except TraceFileError as exc:
        raise _fail(str(exc)) from None
    if list_:
        console.print(render_index(episodes))
        return
    chosen = [
        e
        for e in episodes
        if (question is None or e.question == question) and (seed is None or e.seed == seed)
    ]
    if not chosen:
        raise _fail(f"{path}: no episode with question={question} seed={seed}")
    console.print(render_episode(chosen[0]))


@trace_app.command("schema")
def trace_schema() -> None:
    """Print the JSON Schema of a trace line."""
    import json

    from ..traces import EpisodeTrace

    console.print_json(json.dumps(EpisodeTrace.model_json_schema()))
