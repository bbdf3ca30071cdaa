"""Commands that read data: ``envs`` (list, fetch, canonicalize; import and probe in
:mod:`.samples`) and ``trace`` (show, schema)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import EXIT_FAILED, EnvDirOption, EnvOption, _fail, console

envs_app = typer.Typer(help="List and fetch replay environments.", invoke_without_command=True)
trace_app = typer.Typer(help="Read execution traces.", no_args_is_help=True)


@envs_app.callback()
def envs(
    ctx: typer.Context,
    env_dir: EnvDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the replay environments with their statistics."""
    if ctx.invoked_subcommand is not None:
        return
    from ..envs.stores import (
        StoreError,
        list_environments,
        load_environment_records,
        resolve_env_dir,
    )

    try:
        root = resolve_env_dir(env_dir)
        infos = list_environments(root)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    found = []
    for info in infos:
        try:
            records = load_environment_records(info.env_id, root)
        except StoreError as exc:
            found.append({"id": info.env_id, "path": str(info.path), "error": str(exc)})
            continue
        branches = [b for r in records for b in r.each_branch]
        passed = sum(any(b[2] == r.gold_answer for b in r.each_branch) for r in records)
        found.append(
            {
                "id": info.env_id,
                "path": str(info.path),
                "questions": len(records),
                "branches": len(records[0].each_branch),
                "delta": records[0].probe_freq,
                "mean_branch_tokens": sum(b[1] for b in branches) / len(branches),
                "mean_probes": sum(len(b[0]) for b in branches) / len(branches),
                "pass_at_all": 100 * passed / len(records),
                "width_only": any(r.width_only for r in records),
            }
        )
    if as_json:
        typer.echo(json.dumps({"directory": str(root), "environments": found}, indent=2))
    else:
        _envs_table(root, found)
    if not infos:
        raise _fail(f"no MODEL/DATASET.json stores in {root}")
    if any("error" in e for e in found):
        raise typer.Exit(EXIT_FAILED)


def _envs_table(root, found: list[dict]) -> None:
    table = Table(title=f"replay environments in {root}")
    width = max((len(e["id"]) for e in found), default=2)
    table.add_column("id", no_wrap=True, min_width=width)
    for column in ("questions", "branches", "Δ", "mean branch tokens", "mean probes"):
        table.add_column(column)
    table.add_column("pass@all %")
    table.add_column("status")
    for e in found:
        if "error" in e:
            table.add_row(e["id"], "", "", "", "", "", "", f"[red]{e['error']}[/]")
            continue
        table.add_row(
            e["id"],
            str(e["questions"]),
            str(e["branches"]),
            str(e["delta"]),
            f"{e['mean_branch_tokens']:,.0f}",
            f"{e['mean_probes']:.1f}",
            f"{e['pass_at_all']:.1f}",
            "[yellow]width-only (envs probe)[/]" if e["width_only"] else "[green]ok[/]",
        )
    console.print(table)


@envs_app.command("canonicalize")
def envs_canonicalize(
    env: EnvOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Also write every merged group as JSON here.")
    ] = None,
    env_dir: EnvDirOption = None,
) -> None:
    """Report which answers --canonicalize merges: groups, strings, final answers changed."""
    from ..envs.answer_groups import cached_groups, merge_report
    from ..envs.registry import resolve_ids
    from ..envs.stores import StoreError, find_environment, load_environment_records
    from ..utils.atomic_files import atomic_write_text

    try:
        env_ids = resolve_ids(env or ["all"], env_dir)
        stores = [(e, find_environment(e, env_dir).path) for e in env_ids]
        records = {e: load_environment_records(e, env_dir) for e in env_ids}
    except StoreError as exc:
        raise _fail(str(exc)) from None
    table = Table(title="answers grouped by equivalence (math-verify)")
    for column in ("environment", "groups merged", "strings merged", "finals changed",
                   "gold group grew", "examples"):  # fmt: skip
        table.add_column(column, overflow="fold")
    report = {}
    for env_id, path in stores:
        rows = merge_report(records[env_id], cached_groups(path, records[env_id]))
        report[env_id] = rows
        examples = "; ".join(
            f"{' = '.join(r['merged'][:2])} → {r['representative']}"
            for r in sorted(rows, key=lambda r: -r["finals_changed"])[:2]
        )
        table.add_row(
            env_id, str(len(rows)), str(sum(len(r["merged"]) for r in rows)),
            str(sum(r["finals_changed"] for r in rows)),
            str(sum(r["gold_group"] for r in rows)), examples or "-",
        )  # fmt: skip
    console.print(table)
    if out is not None:
        atomic_write_text(out, json.dumps(report, indent=2))


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
    from ..envs.fetch import FetchError, fetch_environments

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
    from ..results.traces import TraceFileError, read_traces, render_episode, render_index

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

    from ..results.traces import EpisodeTrace

    console.print_json(json.dumps(EpisodeTrace.model_json_schema()))


from .samples import register as _register_samples  # noqa: E402

_register_samples(envs_app)
