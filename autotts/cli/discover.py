"""CLI commands of the discovery loop: ``discover``, ``export``, ``report``.

(No ``from __future__ import annotations`` here: typer reads the option types of the
commands defined inside :func:`register` at definition time.)
"""

import contextlib
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

AIME24 = [f"Qwen3-{m}/aime24" for m in ("0.6B", "1.7B", "4B", "8B")]
AIME25 = [f"Qwen3-{m}/aime25" for m in ("0.6B", "1.7B", "4B", "8B")]


def register(app: typer.Typer, console, err_console, _fail, EnvDirOption) -> None:  # noqa: N803
    """Add the discovery commands to the ``autotts`` app (called by :mod:`autotts.cli`)."""

    @app.command()
    def discover(
        out: Annotated[
            Path | None,
            typer.Option("--out", "-o", help="Run directory (default: autotts-runs/<time>)."),
        ] = None,
        resume: Annotated[
            Path | None,
            typer.Option(help="Continue the run in this directory (settings come from it)."),
        ] = None,
        search_env: Annotated[
            list[str] | None,
            typer.Option(
                "--search-env", help="Search environment; repeatable (default: AIME24 ×4)."
            ),
        ] = None,
        heldout_env: Annotated[
            list[str] | None,
            typer.Option(
                "--heldout-env", help="Held-out environment; repeatable (default: AIME25 ×4)."
            ),
        ] = None,
        trials: Annotated[int, typer.Option(min=1, help="Optuna trials (or LLM rounds).")] = 150,
        budget_minutes: Annotated[
            float, typer.Option(min=0.1, help="Wall-time budget of the search stage.")
        ] = 7.0,
        seeds: Annotated[int, typer.Option(min=1, help="Seeds per question while searching.")] = 20,
        final_seeds: Annotated[
            int, typer.Option(min=1, help="Seeds for the final sweeps and the held-out judgement.")
        ] = 100,
        strategy: Annotated[
            str,
            typer.Option(
                help="Without an LLM: 'optuna' (structural search + β-family compression) or "
                "'tune' (tune CMC's β-schedule constants)."
            ),
        ] = "optuna",
        sampler: Annotated[str, typer.Option(help="Optuna sampler: tpe or nsga2.")] = "tpe",
        storage: Annotated[
            str | None,
            typer.Option(
                help="Optuna storage URL (default sqlite:///RUN/optuna.db); e.g. postgresql://…"
            ),
        ] = None,
        study: Annotated[
            str, typer.Option(help="Optuna study name (share it across workers).")
        ] = "structural",
        name: Annotated[
            str, typer.Option(help="Name of the discovered controller.")
        ] = "discovered",
        llm_model: Annotated[
            str | None,
            typer.Option(
                help="Model for the LLM proposer; without it the Optuna path runs. Env: AUTOTTS_LLM_MODEL."
            ),
        ] = None,
        llm_base_url: Annotated[
            str | None,
            typer.Option(
                help="OpenAI-compatible endpoint. Env: AUTOTTS_LLM_BASE_URL or OPENAI_BASE_URL."
            ),
        ] = None,
        llm_api_key: Annotated[
            str | None, typer.Option(help="API key. Env: AUTOTTS_LLM_API_KEY or OPENAI_API_KEY.")
        ] = None,
        temperature: Annotated[float, typer.Option(help="LLM sampling temperature.")] = 0.7,
        price_in: Annotated[
            float | None, typer.Option(help="$ per 1M prompt tokens (for the cost record).")
        ] = None,
        price_out: Annotated[float | None, typer.Option(help="$ per 1M completion tokens.")] = None,
        workers: Annotated[int | None, typer.Option(min=1, help="Worker processes.")] = None,
        unsafe_no_sandbox: Annotated[
            bool,
            typer.Option(
                "--unsafe-no-sandbox",
                help="Run LLM-written candidates without OS isolation (separate processes and "
                "parent-side scoring only). Only where isolation is unavailable and you trust "
                "the model and its endpoint.",
            ),
        ] = False,
        env_dir: EnvDirOption = None,
    ) -> None:
        """Discover a controller: the Optuna path (default) or the LLM proposer (--llm-model)."""
        from ..discovery.optuna_search import SearchSettings
        from ..discovery.pipeline import config_for, settings_from_config
        from ..discovery.rundir import RunDirectory, RunError
        from ..sandbox import IsolationUnavailable, require_isolation
        from ..store import StoreError

        llm_model = llm_model or os.environ.get("AUTOTTS_LLM_MODEL")
        stack = contextlib.ExitStack()
        with stack:
            try:
                if resume is not None:
                    run = RunDirectory.open(resume)
                    stack.enter_context(run.lock())
                    RunDirectory.open(run.path)  # re-checked under the lock
                    config = run.config
                    if config.get("strategy") == "llm" and not unsafe_no_sandbox:
                        require_isolation()
                    settings = settings_from_config(config)
                    if env_dir is not None:
                        settings.env_dir = str(env_dir)
                else:
                    settings = SearchSettings(
                        search_envs=list(search_env or AIME24),
                        heldout_envs=list(heldout_env or AIME25),
                        seeds=seeds,
                        final_seeds=final_seeds,
                        trials=trials,
                        time_budget_s=60.0 * budget_minutes,
                        sampler=sampler,
                        storage=storage,
                        study_name=study,
                        workers=workers,
                        env_dir=str(env_dir) if env_dir else None,
                    )
                    llm = None
                    if llm_model:
                        llm = {
                            "model": llm_model,
                            "base_url": llm_base_url
                            or os.environ.get("AUTOTTS_LLM_BASE_URL")
                            or os.environ.get("OPENAI_BASE_URL"),
                            "temperature": temperature,
                            "price_in": price_in,
                            "price_out": price_out,
                        }
                    if strategy not in ("optuna", "tune"):
                        raise ValueError(f"unknown --strategy {strategy!r}; use optuna or tune")
                    if llm and not unsafe_no_sandbox:
                        require_isolation()  # before the run directory exists
                    config = config_for(settings, "llm" if llm else strategy, name=name, llm=llm)
                    path = out or Path("autotts-runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
                    run = RunDirectory.create(path, config)
                    stack.enter_context(run.lock())
                _check_envs(settings)
            except (RunError, StoreError, ValueError, IsolationUnavailable) as exc:
                raise _fail(str(exc)) from None
            try:
                if unsafe_no_sandbox and config.get("strategy") == "llm":
                    err_console.print(
                        "[bold yellow]warning:[/] --unsafe-no-sandbox: LLM-written code runs without "
                        "operating-system isolation; it can read and change what this user can.",
                        highlight=False,
                    )
                console.print(f"run directory: [bold]{run.path}[/]", highlight=False)
                if config.get("strategy") == "llm":
                    from ..discovery.agent import run_llm_discovery

                    api_key = (
                        llm_api_key
                        or os.environ.get("AUTOTTS_LLM_API_KEY")
                        or os.environ.get("OPENAI_API_KEY")
                    )
                    summary = run_llm_discovery(
                        run,
                        settings,
                        config,
                        api_key,
                        console=err_console,
                        isolate=not unsafe_no_sandbox,
                    )
                    _print_llm_summary(console, summary)
                    _print_comparison(console, run, config.get("name", "discovered"))
                else:
                    verdict = _run_optuna(
                        run, settings, config.get("name", "discovered"), err_console
                    )
                    _print_comparison(console, run, config.get("name", "discovered"))
                    if verdict is not None and not (
                        verdict["matches_sc64_within_35pct"] or verdict["beats_cmc"]
                    ):
                        err_console.print(
                            "[yellow]the discovered family met neither held-out target[/]"
                        )
            except RunError as exc:  # a full disk, a failing LLM endpoint, a broken study
                raise _fail(str(exc), code=1) from None
        console.print(
            f"export: autotts export {run.path} -o controllers/discovered/{name.replace('-', '_')}.py"
            f"   report: autotts report {run.path}",
            highlight=False,
        )

    @app.command()
    def export(
        run: Annotated[Path, typer.Argument(help="A discovery run directory.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Controller file to write.")],
        candidate: Annotated[
            str | None, typer.Option(help="Export this candidate (round id) instead of the winner.")
        ] = None,
    ) -> None:
        """Write a run's winner (or a candidate) as a self-contained controller file."""
        from ..discovery.export import export_controller
        from ..discovery.rundir import RunError

        try:
            path = export_controller(run, out, candidate)
        except (RunError, ValueError) as exc:
            raise _fail(str(exc)) from None
        console.print(f"wrote {path}; check it with: autotts check {path}", highlight=False)

    @app.command()
    def report(
        run: Annotated[Path, typer.Argument(help="A discovery or collaboration run directory.")],
    ) -> None:
        """Render a run: a discovery run as report.md / report.html with its trajectory and
        scaling curves; a collaboration run (``autotts collab search``) as report.md with the
        accuracy-vs-FLOPs frontier on the search and held-out datasets."""
        from ..discovery.report import render_report
        from ..discovery.rundir import RunDirectory, RunError

        try:
            directory = RunDirectory.open(run)
            if directory.config.get("kind") == "collab":
                from ..collab.report import render_collab_report

                paths = render_collab_report(directory)
            else:
                paths = render_report(directory)
        except RunError as exc:
            raise _fail(str(exc)) from None
        console.print("  ".join(str(p) for p in paths.values()), highlight=False)


def _check_envs(settings) -> None:
    from ..store import find_environment

    for env_id in settings.search_envs + settings.heldout_envs:
        find_environment(env_id, settings.env_dir)


def _run_optuna(run, settings, name: str, err_console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from ..discovery.pipeline import run_optuna_discovery

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console) as bar:
        task = bar.add_task("search", total=settings.trials)

        def progress(done: int, total: int, point) -> None:
            text = "search"
            if point is not None:
                text = f"search (last: {point.accuracy:.2f}% @ {point.tokens / 1000:.0f}k)"
            bar.update(task, completed=done, total=total, description=text)

        def stage(name_: str) -> None:
            if name_ != "search":
                bar.update(
                    task,
                    description=f"{name_}: 11 β × {settings.final_seeds} seeds",
                    completed=0,
                    total=None,
                )

        result = run_optuna_discovery(run, settings, name, progress, stage)
    return result.get("verdict")


def _print_comparison(console, run, name: str) -> None:
    from ..discovery.report import COMPARISON_COLUMNS, comparison_rows, verdict_lines

    for stage_file, title in (("search.json", "search set"), ("heldout.json", "held-out")):
        if not (run.path / stage_file).exists():
            continue
        data = run.read_json(stage_file)
        table = Table(title=f"{title}: means over {', '.join(data['envs'])}")
        for column in COMPARISON_COLUMNS:
            table.add_column(column)
        for row in comparison_rows(data, name):
            table.add_row(*row)
        console.print(table)
        for line in verdict_lines(data.get("verdict"), name):
            console.print(line, highlight=False)


def _print_llm_summary(console, summary: dict) -> None:
    table = Table(title="LLM discovery rounds")
    for column in ("round", "candidate", "status", "best β accuracy %", "tokens"):
        table.add_column(column)
    for r in summary.get("rounds", []):
        table.add_row(
            str(r.get("round")),
            r.get("candidate", "-"),
            r.get("status", ""),
            f"{r['accuracy']:.2f}" if r.get("accuracy") is not None else "-",
            f"{r['tokens'] / 1000:.1f}k" if r.get("tokens") is not None else "-",
        )
    console.print(table)
