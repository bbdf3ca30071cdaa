"""The ``autotts`` command line.

Exit codes: 0 success; 1 the command ran but something failed (a controller errored, a check
did not pass, results differ from the reference); 2 bad input (unknown environment, malformed
store, unreadable controller spec or trace file).
"""

from __future__ import annotations

import json
import shutil
from typing import Annotated

import typer
from rich.table import Table

from ..envs.registry import resolve_ids, shared
from ..errors import BadInput
from ..loading.run_configs import (
    BASELINES_PRESET,
    PAPER_PRESET,
    parse_spec,
    refuse_unloadable,
    without_missing_signals,
)
from ..results.provenance import run_record, write_run_record
from .common import (
    EXIT_FAILED,
    CanonicalizeOption,
    EnvDirOption,
    EnvOption,
    JsonOption,
    MlflowOption,
    OutOption,
    OverwriteOption,
    PdbOption,
    RaiseOption,
    SandboxOption,
    SeedsOption,
    TraceSeedsOption,
    UnsafeOption,
    WorkersOption,
    _fail,
    claim_output,
    console,
    err_console,
    require_tracking,
    track,
)
from .progress import counting

app = typer.Typer(
    help="autotts: discover, evaluate and compare test-time-scaling controllers on replay environments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _configs_and_envs(specs, env, env_dir, default_envs):
    """Parse controller specs and environment patterns; bad input exits with code 2."""
    try:
        configs = [config for spec in specs for config in parse_spec(spec)]
        return configs, resolve_ids(env or default_envs, env_dir)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _debug(exc: BaseException, mode: str) -> None:
    """``--raise``: the controller's full traceback, exit 1; ``--pdb``: a post-mortem there."""
    import traceback

    traceback.print_exception(exc)
    if mode == "pdb":
        import pdb

        pdb.post_mortem(exc.__traceback__)
    raise typer.Exit(EXIT_FAILED)


def _run_and_report(
    configs,
    env_ids,
    env_dir,
    seeds,
    workers,
    out,
    trace_seeds,
    with_reference=False,
    sandbox=None,
    unsafe_no_sandbox=False,
    overwrite=False,
    as_json=False,
    debug=None,
    mlflow=None,
    budgets=False,
    canonicalize=False,
):
    from ..envs.stores import StoreError
    from ..evaluation.evaluator import evaluate
    from ..results.evaluation_report import matches_reference, reference_for, write_outputs
    from ..sandbox import IsolationUnavailable

    try:
        refuse_unloadable(configs, sandbox)
    except BadInput as exc:
        raise _fail(str(exc)) from None
    out = claim_output(out, overwrite)
    require_tracking(mlflow)
    what = f"{len(configs)} configs × {len(env_ids)} envs × {seeds} seeds"
    with counting(what) as progress:
        try:
            report = evaluate(
                configs,
                env_ids,
                seeds=seeds,
                env_dir=env_dir,
                workers=workers,
                trace_seeds=trace_seeds,
                progress=progress,
                sandbox=sandbox,
                isolate=not unsafe_no_sandbox,
                stop_on_error=debug is not None,
                canonicalize=canonicalize,
            )
        except (StoreError, IsolationUnavailable, BadInput) as exc:
            raise _fail(str(exc)) from None
        except Exception as exc:
            if debug is None:
                raise
            progress.bar.stop()
            _debug(exc, debug)
    if overwrite:
        shutil.rmtree(out / "traces", ignore_errors=True)  # old traces never mix with new ones
    from ..evaluation.sc64_cache import sc64_for

    sc64 = sc64_for(report, env_dir, canonicalize)
    paths = write_outputs(report, out, with_reference, baseline=sc64)
    if budgets:
        paths["budgets"] = _write_budgets(report, out)
    record = run_record(env_ids, env_dir, seeds, configs=len(configs), canonicalize=canonicalize)
    write_run_record(out, record)
    from .tracking import log_evaluation

    track(mlflow, log_evaluation, report, out)
    if as_json:
        typer.echo(json.dumps(report.to_records(), indent=2, allow_nan=False, default=str))
        err_console.print(f"results: {paths['markdown']}  {paths['csv']}", highlight=False)
        _exit_on_failures(report, with_reference)
        return
    if budgets:  # every setting of every curve is too long a table: the budgets instead
        console.print(paths["budgets"].read_text(), markup=False, highlight=False)
        console.print(f"results: {paths['markdown']}  plot: {paths.get('plot_png', '-')}")
        _exit_on_failures(report, with_reference)
        return
    table = Table(title=f"{seeds} seeds, {report.seconds:.1f} s", show_lines=False)
    columns = ("controller", "setting", "environment", "accuracy % ± se", "95 % interval")
    for column in (*columns, "tokens", "status"):
        table.add_column(column, overflow="fold")
    if with_reference:
        table.add_column("reference")
    for row in report.rows:
        cells = [*row.cells(), "[green]ok[/]" if row.status == "ok" else f"[red]{row.status}[/]"]
        if with_reference:
            ref = reference_for(row)
            mark = "" if ref is None else ("[green]✓[/]" if matches_reference(row) else "[red]✗[/]")
            cells.append("" if ref is None else f"{ref[0]:.2f} / {ref[1]:.1f}k {mark}")
        table.add_row(*cells)
    console.print(table)
    _print_summaries(report, sc64)
    console.print(
        f"results: {paths['markdown']}  {paths['csv']}  plot: {paths.get('plot_png', '-')}"
    )
    _exit_on_failures(report, with_reference)


def _write_budgets(report, out):
    """Write the matched-budget table (``budgets.md``, ``budgets.json``); return the first."""
    from ..results.budgets import budgets_markdown, matched_budgets
    from ..utils.atomic_files import atomic_write_text

    try:
        rows = matched_budgets(report)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    atomic_write_text(out / "budgets.json", json.dumps(rows, indent=2))
    return atomic_write_text(out / "budgets.md", budgets_markdown(rows))


def _print_summaries(report, sc64=None) -> None:
    from ..results.curve_summaries import BASELINE, curve_summaries

    summaries = curve_summaries(report, reference=sc64)
    if not summaries:
        return
    table = Table(title="whole curves (summary.csv)")
    match = f"tokens to match {BASELINE[0]}@{BASELINE[1]} [95 %]"
    volume = "hypervolume (to tokens)"  # the reference is fixed per environment
    for column in ("controller", "environment", "AUC (log tokens)", volume, "ARISE", match):
        table.add_column(column, overflow="fold")
    for s in summaries:
        reach, interval = s["tokens_to_match"], s["tokens_to_match_interval"]
        reached = "-" if reach is None else f"{reach / 1000:.1f}k"
        if interval:
            # a replicate whose curve never reaches the baseline counts as infinitely many tokens
            shown = (f"{v / 1000:.1f}k" if v != float("inf") else "never" for v in interval)
            reached += " [" + ", ".join(shown) + "]"
        auc = "-" if s["auc"] is None else f"{s['auc']:.2f}"
        volume = f"{s['hypervolume']:.1f} (to {s['hypervolume_reference'] / 1000:,.0f}k)"
        table.add_row(s["controller"], s["env"], auc, volume, f"{s['arise']:+.4f}", reached)
    console.print(table)


def _exit_on_failures(report, with_reference: bool) -> None:
    """Name every failed configuration; exit 1 on failures or reference mismatches."""
    from ..results.evaluation_report import matches_reference, reference_for

    failed = [row for row in report.rows if row.status != "ok"]
    for row in failed:
        err_console.print(
            f"[red]{row.controller} ({row.setting}) on {row.env_id}:[/] {row.status}",
            highlight=False,
        )
    mismatched = with_reference and any(
        reference_for(r) is not None and not matches_reference(r) for r in report.rows
    )
    if failed or mismatched:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def evaluate(
    controller: Annotated[
        str,
        typer.Argument(help="Controller file or built-in name (`autotts controllers` lists them)."),
    ],
    env: EnvOption = None,
    betas: Annotated[
        str | None, typer.Option(help="Comma-separated β values (default 0,0.1,…,1).")
    ] = None,
    grid: Annotated[
        str | None, typer.Option(help="Sweep one parameter instead of β, e.g. n=1,2,4,8,16,32,64.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Fixed parameter override key=value; repeatable."),
    ] = None,
    seeds: SeedsOption = 100,
    workers: WorkersOption = None,
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
    raise_errors: RaiseOption = False,
    pdb: PdbOption = False,
    mlflow: MlflowOption = None,
    canonicalize: CanonicalizeOption = False,
    trace_seeds: TraceSeedsOption = 1,
    sandbox: SandboxOption = None,
    unsafe_no_sandbox: UnsafeOption = False,
    env_dir: EnvDirOption = None,
) -> None:
    """Evaluate one controller over a β (or parameter) grid on one or more environments."""
    spec = controller
    if grid and betas:
        raise _fail("use either --betas or --grid, not both")
    if grid:
        spec += f"@{grid}"
    elif betas:
        spec += f"@beta={betas}"
    for item in param or []:
        spec += f"@{item}"
    configs, env_ids = _configs_and_envs([spec], env, env_dir, ["Qwen3-8B/aime24"])
    options = dict(
        sandbox=sandbox, unsafe_no_sandbox=unsafe_no_sandbox, overwrite=overwrite, as_json=as_json
    )
    options["debug"] = "pdb" if pdb else "raise" if raise_errors else None
    options["mlflow"] = mlflow
    options["canonicalize"] = canonicalize
    _run_and_report(configs, env_ids, env_dir, seeds, workers, out, trace_seeds, **options)


@app.command()
def compare(
    specs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Controller specs NAME\\[@key=v1,v2...], e.g. cmc@beta=0.5,1.0 sc@n=64."
        ),
    ] = None,
    env: EnvOption = None,
    preset: Annotated[
        str | None,
        typer.Option(
            help="'paper': the AutoTTS Table 1 configurations on all environments, checked against the published numbers. 'baselines': every baseline over its β grid and the discovered family on all environments, as accuracy at 25/50/100 % of SC@64's tokens (budgets.md) and one plot."
        ),
    ] = None,
    seeds: SeedsOption = 100,
    workers: WorkersOption = None,
    out: OutOption = None,
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
    raise_errors: RaiseOption = False,
    pdb: PdbOption = False,
    mlflow: MlflowOption = None,
    canonicalize: CanonicalizeOption = False,
    trace_seeds: TraceSeedsOption = 1,
    sandbox: SandboxOption = None,
    unsafe_no_sandbox: UnsafeOption = False,
    env_dir: EnvDirOption = None,
) -> None:
    """Compare several controllers × environments: one table, one plot."""
    presets = {"paper": PAPER_PRESET, "baselines": BASELINES_PRESET}
    if preset is not None and preset not in presets:
        raise _fail(f"unknown preset {preset!r} (known: {', '.join(presets)})")
    specs = list(specs or []) + list(presets.get(preset, ()))
    if not specs:
        raise _fail("give at least one controller spec, or --preset paper|baselines")
    default_envs = ["all"] if preset else ["Qwen3-8B/aime24"]
    configs, env_ids = _configs_and_envs(specs, env, env_dir, default_envs)
    if preset:  # a preset's controllers that need signals these stores lack are left out
        stores = [shared(e, env_dir) for e in env_ids]
        configs, notes = without_missing_signals(configs, stores, sandbox)
        for note in notes:
            console.print(note, markup=False, highlight=False)
    options = dict(
        sandbox=sandbox, unsafe_no_sandbox=unsafe_no_sandbox, overwrite=overwrite, as_json=as_json,
        debug="pdb" if pdb else "raise" if raise_errors else None, mlflow=mlflow,
        canonicalize=canonicalize, with_reference=preset == "paper", budgets=preset == "baselines",
    )  # fmt: skip
    _run_and_report(configs, env_ids, env_dir, seeds, workers, out, trace_seeds, **options)


@app.command()
def check(
    controller: Annotated[
        str,
        typer.Argument(help="Controller file or built-in name (`autotts controllers` lists them)."),
    ],
    env: Annotated[
        str, typer.Option("--env", "-e", help="Environment to run on.")
    ] = "Qwen3-8B/aime24",
    questions: Annotated[int, typer.Option(min=1, help="Questions to run.")] = 8,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per question.")] = 4,
    tolerance: Annotated[
        float,
        typer.Option(min=0.0, help="Allowed relative drop of mean tokens between consecutive β."),
    ] = 0.02,
    sandbox: SandboxOption = None,
    unsafe_no_sandbox: UnsafeOption = False,
    env_dir: EnvDirOption = None,
) -> None:
    """Validate a controller: imports, β schedule, runs, determinism, cost monotone in β."""
    from ..envs.stores import StoreError
    from ..evaluation.checker import check_controller
    from ..sandbox import IsolationUnavailable

    try:
        report = check_controller(
            controller,
            env,
            env_dir=env_dir,
            questions=questions,
            seeds=seeds,
            tolerance=tolerance,
            sandbox=sandbox,
            isolate=not unsafe_no_sandbox,
        )
    except (StoreError, IsolationUnavailable, ValueError) as exc:
        raise _fail(str(exc)) from None
    for item in report.items:
        mark = "[green]PASS[/]" if item.ok else "[red]FAIL[/]"
        console.print(f"{mark} {item.name}: {item.detail}", highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


from . import catalogue, collab, discover, live, serve  # noqa: E402
from .data import envs_app, trace_app  # noqa: E402

for _commands in (catalogue, discover, live, collab, serve):
    _commands.register(app)
app.add_typer(envs_app, name="envs")
app.add_typer(trace_app, name="trace")
