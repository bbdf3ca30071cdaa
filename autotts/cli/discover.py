"""CLI commands of the discovery loop: ``discover`` (and, from :mod:`.run_commands`,
``quicktest``, ``export``, ``report``).

(No ``from __future__ import annotations`` here: typer reads the option types of the
commands defined inside :func:`register` at definition time.)
"""

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from ..discovery.runs import AIME24, AIME25
from ..errors import BadInput
from ..results.run_directory import RUNS_DIR, RunDirectory
from ..sandbox import IsolationUnavailable
from .common import (
    EnvDirOption,
    MlflowOption,
    _fail,
    console,
    err_console,
    require_tracking,
    track,
)
from .progress import DiscoveryProgress


def register(app: typer.Typer) -> None:
    """Add the discovery commands to the ``autotts`` app (called by :mod:`autotts.cli`), and
    the commands on a run directory (:mod:`.run_commands`)."""
    from .run_commands import register as register_run_commands

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
            float | None,
            typer.Option(
                min=0.1,
                help="Wall-time cap of the search stage (default: none: the trial count alone "
                "decides, so a run is deterministic given --seed).",
            ),
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of the Optuna sampler.")] = 0,
        target: Annotated[
            str,
            typer.Option(
                help="Budget windows as shares of SC@64's tokens on the search set: the search "
                "stays below the largest, one more study per window maximises accuracy inside "
                "it, the family keeps the best points inside each ('none': no windows, the "
                "family is fitted to the whole front).",
            ),
        ] = "0.30,0.55",
        window_trials: Annotated[
            int, typer.Option(min=1, help="Trials of each window's study (with --target).")
        ] = 150,
        race_seeds: Annotated[
            int,
            typer.Option(
                min=0,
                help="Fresh seeds on which the contenders are raced before the family is fitted "
                "(0: no race; the family is fitted to the search's means).",
            ),
        ] = 100,
        seeds: Annotated[int, typer.Option(min=1, help="Seeds per question while searching.")] = 20,
        final_seeds: Annotated[
            int, typer.Option(min=1, help="Seeds for the final sweeps and the held-out judgement.")
        ] = 100,
        strategy: Annotated[
            Literal["optuna", "tune"],
            typer.Option(
                help="Without an LLM: 'optuna' (structural search + β-family compression) or "
                "'tune' (tune CMC's β-schedule constants)."
            ),
        ] = "optuna",
        sampler: Annotated[
            Literal["tpe", "nsga2"], typer.Option(help="Optuna sampler: tpe or nsga2.")
        ] = "tpe",
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
        agent_cmd: Annotated[
            str | None,
            typer.Option(
                "--agent-cmd",
                help="A coding agent as the proposer: this shell command runs once per round "
                "in a workspace holding TASK.md (also its stdin), best.py, history.jsonl and "
                './quicktest, and must leave controller.py there (e.g. "claude -p '
                '--output-format json --allowedTools Bash,Edit,Write").',
            ),
        ] = None,
        agent_timeout: Annotated[
            float,
            typer.Option("--agent-timeout", min=1.0, help="Seconds the agent may take per round."),
        ] = 1800.0,
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
        max_usd: Annotated[float | None, typer.Option(help="LLM budget in $: stop there.")] = None,
        max_llm_tokens: Annotated[int | None, typer.Option(help="LLM budget in tokens.")] = None,
        llm_max_tokens: Annotated[int, typer.Option(help="Tokens per LLM reply.")] = 16_384,
        llm_retries: Annotated[int, typer.Option(help="Retries per request (backoff).")] = 4,
        parallel: Annotated[int, typer.Option(min=1, help="LLM proposals at once.")] = 1,
        llm_structured: Annotated[bool, typer.Option(help="JSON replies where supported.")] = True,
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
        mlflow: MlflowOption = None,
        as_json: Annotated[
            bool,
            typer.Option(
                "--json",
                help="Print the judgements (curves with intervals, verdicts) as JSON on stdout "
                "instead of tables.",
            ),
        ] = False,
    ) -> None:
        """Discover a controller: the Optuna path (default) or the LLM proposer (--llm-model)."""
        from ..discovery.runs import discover as run_discovery
        from ..discovery.strategies import (
            ROUND_STRATEGIES,
            AgentStrategy,
            LLMStrategy,
            OptunaStrategy,
            strategy_from,
        )
        from ..errors import AutoTTSError

        require_tracking(mlflow)
        llm_model = llm_model or os.environ.get("AUTOTTS_LLM_MODEL")
        isolate = not unsafe_no_sandbox
        api_key = (
            llm_api_key or os.environ.get("AUTOTTS_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        )
        try:
            if resume is not None:
                # the recorded strategy is used; only the secrets come from here
                chosen = LLMStrategy("?", api_key=api_key, isolate=isolate)
                path = RunDirectory.open(resume).path  # a run must be there
            else:
                if agent_cmd and llm_model:
                    raise _fail("choose one proposer: --agent-cmd or --llm-model, not both")
                if agent_cmd:
                    chosen = AgentStrategy(
                        agent_cmd,
                        agent_timeout,
                        max_usd=max_usd,
                        max_llm_tokens=max_llm_tokens,
                        isolate=isolate,
                    )
                elif llm_model:
                    chosen = LLMStrategy(
                        llm_model,
                        llm_base_url
                        or os.environ.get("AUTOTTS_LLM_BASE_URL")
                        or os.environ.get("OPENAI_BASE_URL"),
                        temperature,
                        price_in,
                        price_out,
                        max_tokens=llm_max_tokens,
                        max_retries=llm_retries,
                        max_usd=max_usd,
                        max_llm_tokens=max_llm_tokens,
                        parallel=parallel,
                        structured=llm_structured,
                        api_key=api_key,
                        isolate=isolate,
                    )
                elif strategy == "optuna":
                    chosen = OptunaStrategy(sampler, storage=storage, study_name=study)
                else:
                    chosen = strategy_from(strategy)
                path = out or Path(RUNS_DIR) / datetime.now().strftime("%Y%m%d-%H%M%S")
                if (path / "config.json").exists():
                    raise _fail(
                        f"{path} holds a run already; continue it with --resume {path}, "
                        "or choose another --out"
                    )
            with DiscoveryProgress(err_console, trials) as bar:
                if unsafe_no_sandbox:
                    err_console.print(
                        "[bold yellow]warning:[/] --unsafe-no-sandbox: LLM-written code runs "
                        "without operating-system isolation; it can read and change what this "
                        "user can.",
                        highlight=False,
                    )
                err_console.print(f"run directory: [bold]{path}[/]", highlight=False)
                run = run_discovery(
                    list(search_env or AIME24),
                    list(heldout_env or AIME25),
                    strategy=chosen,
                    run_dir=path,
                    name=name,
                    seeds=seeds,
                    final_seeds=final_seeds,
                    trials=trials,
                    budget_minutes=budget_minutes,
                    seed=None if resume is not None else seed,
                    targets=_shares(target),
                    window_trials=window_trials,
                    race_seeds=race_seeds,
                    workers=workers,
                    env_dir=env_dir,
                    progress=bar.progress,
                    log=bar.log,
                )
        except AutoTTSError as exc:
            if isinstance(exc, BadInput | IsolationUnavailable):
                raise _fail(str(exc)) from None
            hint = f" (continue with: autotts discover --resume {path})"
            raise _fail(f"{exc}{hint}", code=1) from None
        name = run.config.get("name", name)
        from .tracking import log_discovery

        track(mlflow, log_discovery, run)
        if as_json:
            stages = {f: run.store.read_json(f) for f in ("search.json", "heldout.json")
                      if (run.path / f).exists()}  # fmt: skip
            typer.echo(json.dumps({"run": str(run.path), **{k[:-5]: v for k, v in stages.items()}}))
        else:
            if run.config.get("strategy") in ROUND_STRATEGIES:
                _print_llm_summary(console, run.result or {})
            _print_comparison(console, run.store, name)
        verdict = (run.judgement() or {}).get("verdict")
        if (
            run.config.get("strategy") not in ROUND_STRATEGIES
            and verdict is not None
            and not (verdict["matches_sc64_within_35pct"] or verdict.get("ahead_of_cmc"))
        ):
            err_console.print(
                "[yellow]the discovered family met neither held-out target, even on its means[/]"
            )
        err_console.print(
            f"export: autotts export {run.path} -o controllers/discovered/{name.replace('-', '_')}.py"
            f"   report: autotts report {run.path}",
            highlight=False,
        )

    register_run_commands(app)


def _shares(text: str | None) -> list[float]:
    """``--target 0.30,0.55`` as floats (``none``: no windows); a value that is no number
    exits 2 naming it."""
    shares = []
    if (text or "").strip().lower() == "none":
        return shares
    for item in (text or "").split(","):
        if item.strip():
            try:
                shares.append(float(item))
            except ValueError:
                raise _fail(
                    f"--target: {item.strip()!r} is not a number (e.g. --target 0.30,0.55)"
                ) from None
    return shares


def _print_comparison(console, run, name: str) -> None:
    from ..discovery.run_report import COMPARISON_COLUMNS, comparison_rows, verdict_lines

    if (run.path / "race.json").exists():
        from ..discovery.racing import race_lines

        for line in race_lines(run.read_json("race.json")):
            console.print(line, highlight=False)
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
