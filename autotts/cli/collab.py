"""CLI of multi-LLM collaboration: ``autotts collab eval`` and ``autotts collab search``
(``autotts report RUN`` renders a search run).

(No ``from __future__ import annotations``: typer reads the option types at definition time.)
"""

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from .common import (
    EXIT_FAILED,
    EnvDirOption,
    JsonOption,
    MlflowOption,
    OutOption,
    OverwriteOption,
    SeedsOption,
    WorkersOption,
    _fail,
    claim_output,
    console,
    err_console,
    require_tracking,
    track,
)

ModelsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model", help="A model of the cross-model environment; repeatable (default: all)."
    ),
]
TableOption = Annotated[
    Path | None,
    typer.Option(
        "--model-table",
        help="Cost table (YAML/JSON): {unit: flops|usd, models: {NAME: {parameters: 8.2e9, "
        "usd_per_million_tokens: 0.2}}}; default: FLOPs of the Qwen3 model cards.",
    ),
]


def _cost_table(path: Path | None) -> str | None:
    if path is None:
        return None
    from ..envs.cross_model import CostModel

    return CostModel.load(path).model_dump_json()


def _betas(options: list[str] | None) -> list[float]:
    """``--betas 0.25,0.5 --betas 1`` as floats ≥ 0; a bad value exits 2 naming it."""
    values = []
    for item in options or ["1"]:
        for text in item.split(","):
            try:
                value = float(text)
            except ValueError:
                raise _fail(
                    f"--betas: {text.strip()!r} is not a number (e.g. --betas 0.5,1)"
                ) from None
            if not value >= 0:
                raise _fail(f"--betas: {value:g} is negative; graph-level β must be ≥ 0")
            values.append(value)
    return values


def register(app: typer.Typer) -> None:
    """Add ``autotts collab …`` to the app (called by :mod:`autotts.cli`)."""
    collab = typer.Typer(help="Multi-LLM collaboration graphs on cross-model replay.")
    app.add_typer(collab, name="collab")

    @collab.command("eval")
    def collab_eval(
        graph: Annotated[Path, typer.Argument(help="A graph file (.yaml/.yml/.json).")],
        dataset: Annotated[str, typer.Option(help="Dataset of the replay stores.")] = "aime24",
        model: ModelsOption = None,
        betas: Annotated[
            list[str] | None,
            typer.Option(
                "--betas",
                "--beta",
                help="Comma-separated graph-level β values (scale node β and width); "
                "repeatable. Default 1.",
            ),
        ] = None,
        seeds: SeedsOption = 100,
        budget: Annotated[
            float | None,
            typer.Option(help="Refuse the graph when its full-width cost estimate exceeds this."),
        ] = None,
        export: Annotated[
            Path | None, typer.Option(help="Also write the graph as a controller file here.")
        ] = None,
        model_table: TableOption = None,
        workers: WorkersOption = None,
        out: OutOption = None,
        overwrite: OverwriteOption = False,
        as_json: JsonOption = False,
        mlflow: MlflowOption = None,
        env_dir: EnvDirOption = None,
    ) -> None:
        """Evaluate a collaboration graph: accuracy (± se, 95 % interval), tokens, cost and
        tokens per model; writes results.csv, results.md and run.json into --out."""
        from ..collab.compile import compile_graph, export_graph
        from ..collab.eval_tables import CELL_COLUMNS, cells, graph_row, write_results
        from ..collab.evaluate import CrossSpec, GraphEvaluator
        from ..collab.graph import CollabGraph, GraphError
        from ..envs.stores import StoreError
        from ..results.provenance import run_record, write_run_record

        values = _betas(betas)
        out = claim_output(out, overwrite)
        require_tracking(mlflow)
        try:
            spec = CrossSpec(
                dataset,
                tuple(model) if model else None,
                str(env_dir) if env_dir else None,
                _cost_table(model_table),
            )
            spec_graph = CollabGraph.load(graph)
            rows = []
            with GraphEvaluator(spec, seeds, workers) as evaluator:
                compile_graph(spec_graph, evaluator.env, budget)
                env_id, unit = evaluator.env.env_id, evaluator.env.unit
                for b in values:
                    score = evaluator.score(spec_graph, b)
                    rows.append(graph_row(spec_graph.name, b, env_id, score))
        except (GraphError, StoreError) as exc:
            raise _fail(str(exc)) from None
        unit = "FLOPs" if unit == "flops" else "$"
        paths = write_results(rows, out, unit)
        write_run_record(out, run_record([env_id], env_dir, seeds, graph=str(graph)))
        from .tracking import log_graph_evaluation

        track(mlflow, log_graph_evaluation, rows, out)
        if export is not None:
            err_console.print(f"wrote {export_graph(spec_graph, export)}", highlight=False)
        if as_json:
            typer.echo(json.dumps(rows, indent=2, allow_nan=False))
        else:
            table = Table(title=f"{spec_graph.name} on {env_id}, {seeds} seeds")
            for column in CELL_COLUMNS:
                table.add_column(unit if column == "cost" else column, overflow="fold")
            table.add_column("status")
            for row in rows:
                status = "[green]ok[/]" if row["status"] == "ok" else f"[red]{row['status']}[/]"
                table.add_row(*cells(row), status)
            console.print(table)
        err_console.print(f"results: {paths['markdown']}  {paths['csv']}", highlight=False)
        if any(row["errors"] for row in rows):
            raise typer.Exit(EXIT_FAILED)

    @collab.command("search")
    def collab_search(
        out: Annotated[
            Path | None,
            typer.Option(
                "--out", "-o", help="Run directory (default: autotts-runs/collab-<time>)."
            ),
        ] = None,
        resume: Annotated[
            Path | None, typer.Option(help="Continue the run in this directory (its settings).")
        ] = None,
        strategy: Annotated[
            Literal["optuna", "agent"],
            typer.Option(
                "--strategy",
                "--method",
                help="optuna (multi-objective TPE) or agent (Agent-REINFORCE).",
            ),
        ] = "optuna",
        objective: Annotated[
            str,
            typer.Option(
                help="Optuna: pareto (accuracy and cost, budget as a constraint) or budget "
                "(accuracy within the budget)."
            ),
        ] = "pareto",
        dataset: Annotated[str, typer.Option(help="Search dataset.")] = "aime24",
        heldout: Annotated[
            str, typer.Option(help="Held-out dataset (final numbers only).")
        ] = "aime25",
        model: ModelsOption = None,
        budget: Annotated[
            float, typer.Option(help="Cost budget per question (FLOPs, or $ with a usd table).")
        ] = 4e15,
        trials: Annotated[
            int, typer.Option(min=1, help="Graphs to evaluate while searching.")
        ] = 60,
        seeds: Annotated[int, typer.Option(min=1, help="Seeds per question while searching.")] = 20,
        final_seeds: Annotated[int, typer.Option(min=1)] = 100,
        final_graphs: Annotated[
            int, typer.Option(min=1, help="Searched Pareto graphs taken to the final evaluation.")
        ] = 10,
        seed: Annotated[int, typer.Option(help="Seed of the sampler.")] = 0,
        llm_model: Annotated[
            str | None,
            typer.Option(help="Agent only: the LLM that updates the probabilistic graph."),
        ] = None,
        llm_base_url: Annotated[
            str | None, typer.Option(help="OpenAI-compatible endpoint.")
        ] = None,
        llm_api_key: Annotated[
            str | None, typer.Option(help="API key (env: OPENAI_API_KEY).")
        ] = None,
        model_table: TableOption = None,
        workers: Annotated[int | None, typer.Option(min=1)] = None,
        env_dir: EnvDirOption = None,
    ) -> None:
        """Search collaboration graphs under a cost budget, evaluate the Pareto set and the
        single-model baselines on the search and held-out datasets, export the best graph."""
        from ..collab.evaluate import environment
        from ..collab.graph import GraphError
        from ..collab.search_run import CollabSettings, run_collab, run_path
        from ..envs.stores import StoreError
        from ..results.run_directory import RunDirectory, RunError

        try:
            if resume is not None:
                run = RunDirectory.open(resume)
                settings = CollabSettings.recorded(run.config["settings"])
            else:
                llm = None
                if llm_model:
                    llm = {
                        "model": llm_model,
                        "base_url": llm_base_url or os.environ.get("OPENAI_BASE_URL"),
                    }
                settings = CollabSettings(
                    strategy=strategy,
                    objective=objective,
                    dataset=dataset,
                    heldout=heldout,
                    models=list(model) if model else None,
                    env_dir=str(env_dir) if env_dir else None,
                    cost_table=_cost_table(model_table),
                    budget=budget,
                    trials=trials,
                    seeds=seeds,
                    final_seeds=final_seeds,
                    final_graphs=final_graphs,
                    seed=seed,
                    workers=workers,
                    llm=llm,
                )
                environment(settings.spec())  # bad stores fail here, before a run exists
                environment(settings.spec(heldout))
                run = RunDirectory.create(
                    run_path(out), {"kind": "collab", "settings": asdict(settings)}
                )
            console.print(f"run: {run.path}", highlight=False)
            final = run_collab(
                run, settings, console, llm_api_key or os.environ.get("OPENAI_API_KEY")
            )
        except (RunError, StoreError, GraphError) as exc:
            raise _fail(str(exc)) from None
        from ..collab.frontier_report import render_collab_report, verdict

        paths = render_collab_report(run)
        for line in verdict(final):
            console.print(line, highlight=False)
        console.print("  ".join(str(p) for p in paths.values()), highlight=False)
        console.print(json.dumps({"best": (final.get("best") or {}).get("label")}), highlight=False)
