"""What every ``autotts`` command shares: the consoles, exit codes, the error exit, and the
common options."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

# Lines never wrap (paths and messages stay whole when piped); tables still fit the width.
# Piped into a log, tables get 160 columns instead of rich's default 80 (no folded cells).
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)

# Help piped into a file or pager: as wide as tables (rich's default 80 columns cut option
# text short with "…"). Typer reads the width when it first formats help.
if not sys.stdout.isatty():
    os.environ.setdefault("TERMINAL_WIDTH", "160")
    if "typer.rich_utils" in sys.modules:
        sys.modules["typer.rich_utils"].MAX_WIDTH = int(os.environ["TERMINAL_WIDTH"])

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
RESULTS_DIR = "autotts-results"  # where results go without --out (ignored by .gitignore)

EnvDirOption = Annotated[
    Path | None,
    typer.Option(
        "--env-dir",
        help="Directory of MODEL/DATASET.json stores (default: $AUTOTTS_ENV_DIR, ../shared/environments, the fetch cache).",
    ),
]
EnvOption = Annotated[
    list[str] | None,
    typer.Option(
        "--env",
        "-e",
        help="Environment id MODEL/DATASET; repeatable; glob patterns and 'all' allowed.",
    ),
]
SeedsOption = Annotated[
    int, typer.Option("--seeds", min=1, help="Seeds per question (seed s shuffles the branches).")
]
WorkersOption = Annotated[
    int | None, typer.Option("--workers", min=1, help="Worker processes (default: both cores).")
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Output directory (default: autotts-results/<time>)."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the results as JSON (stdout) instead of a table.")
]
RaiseOption = Annotated[
    bool,
    typer.Option(
        "--raise",
        help="Debug: run in this process and stop at the first controller error with its full "
        "traceback.",
    ),
]
PdbOption = Annotated[
    bool, typer.Option("--pdb", help="Debug: like --raise, then open pdb where the error was.")
]
OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="Replace the results in a non-empty --out (its old traces are removed)."
    ),
]
CanonicalizeOption = Annotated[
    bool,
    typer.Option(
        "--canonicalize",
        help="Group mathematically equivalent answers (math-verify) before controllers see "
        "them; off by default so the published numbers stay exact. See 'autotts envs canonicalize'.",
    ),
]
TraceSeedsOption = Annotated[
    int, typer.Option("--trace-seeds", min=0, help="Seeds per question whose traces are written.")
]
SandboxOption = Annotated[
    bool | None,
    typer.Option(
        "--sandbox/--no-sandbox",
        help="Run controller files in the OS sandbox (--sandbox), or in-process even when "
        "marked untrusted (--no-sandbox). Default: files that `autotts export` marked as "
        "LLM-written run sandboxed, others in-process.",
        show_default=False,
    ),
]
UnsafeOption = Annotated[
    bool,
    typer.Option(
        "--unsafe-no-sandbox",
        help="Where sandboxed code would run, run it in worker processes without OS isolation "
        "(for machines without namespaces, Landlock or seccomp; only for code you trust).",
    ),
]


MlflowOption = Annotated[
    str | None,
    typer.Option(
        "--mlflow",
        help="Also log parameters, metrics and files to MLflow: a tracking URI, or a directory "
        "(a local SQLite store DIR/mlflow.db). Needs: pip install 'autotts\\[tracking]'.",
        show_default=False,
    ),
]


def require_tracking(target: str | None) -> None:
    """Refuse ``--mlflow`` before anything runs when it cannot work (exit 2)."""
    from ..errors import BadInput
    from .tracking import require

    try:
        require(target)
    except BadInput as exc:
        raise _fail(str(exc)) from None


def track(target: str | None, log, *args) -> None:
    """Call a :mod:`autotts.cli.tracking` logger; a failing tracker warns, the results stay."""
    if target is None:
        return
    try:
        run_id = log(target, *args)
    except Exception as exc:  # a tracking server down, a locked database: results are on disk
        err_console.print(f"[yellow]warning:[/] MLflow logging failed: {exc}", highlight=False)
        return
    err_console.print(f"MLflow run {run_id} logged to {target}", highlight=False)


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def claim_output(out: Path | None, overwrite: bool) -> Path:
    """The output directory (default ``autotts-results/<time>``); a non-empty one is refused
    unless told to overwrite. Nothing is created here."""
    from datetime import datetime

    out = out or Path(RESULTS_DIR) / datetime.now().strftime("%Y%m%d-%H%M%S")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise _fail(
            f"{out} is not empty; choose another --out, or pass --overwrite to replace its results"
        )
    return out
