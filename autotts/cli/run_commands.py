"""CLI commands on a discovery run directory: ``quicktest`` (a coding agent's quick test of
a draft, inside its round's workspace), ``export`` and ``report``.

(No ``from __future__ import annotations`` here: typer reads the option types of the
commands defined inside :func:`register` at definition time.)
"""

import json
from pathlib import Path
from typing import Annotated

import typer

from ..results.run_directory import RunDirectory
from ..sandbox import IsolationUnavailable
from .common import _fail, console


def register(app: typer.Typer) -> None:
    """Add the run commands to the ``autotts`` app (called by :mod:`autotts.cli`)."""

    @app.command()
    def quicktest(
        draft: Annotated[Path | None, typer.Argument(help="The controller file to test.")] = None,
        test: Annotated[
            str,
            typer.Option(
                "--test", help="The test's choices, as on a TEST: line: 'betas=0,0.5 seeds=6'."
            ),
        ] = "",
        workspace: Annotated[
            Path, typer.Option(help="The round's workspace (default: this directory).")
        ] = Path("."),
        traces: Annotated[
            str | None,
            typer.Option(
                "--traces",
                help="Instead of a test: the traces of an earlier candidate's episodes that "
                "CMC got right and it got wrong ('candidate=0003 env=ENV beta=0.5 seeds=4').",
            ),
        ] = None,
    ) -> None:
        """A coding agent's quick test of a draft, or its request for traces, inside its
        round's workspace (sandboxed; counted against the round's quick tests)."""
        from ..discovery.llm_loop import search_envs
        from ..discovery.proposer import Proposer
        from ..discovery.stages import settings_from_config
        from ..discovery.trace_requests import traces_text
        from ..utils.atomic_files import atomic_write_text

        state_path = workspace / "quicktest.json"
        if not state_path.is_file():
            raise _fail(
                f"{state_path} not found: run quicktest inside a coding agent's round workspace "
                "(autotts discover --agent-cmd makes them)"
            )
        if traces is None and (draft is None or not draft.is_file()):
            raise _fail(f"{draft}: no such file; write the draft controller first")
        state = json.loads(state_path.read_text())
        if state["tests_left"] <= 0:
            raise _fail("no quick tests left this round: submit by leaving controller.py")
        state["tests_left"] -= 1
        atomic_write_text(state_path, json.dumps(state))  # counted before it runs
        run = RunDirectory.open(state["run"])
        settings = settings_from_config(run.config)
        # always isolated: everything in the workspace, this file included, is the agent's to
        # change, so nothing there may switch the sandbox off
        proposer = Proposer(run, settings, search_envs(settings), isolate=True)
        try:
            if traces is not None:
                report = traces_text(proposer, f"TRACES: {traces}")
            else:
                report = proposer.quick_test(draft.read_text(errors="replace"), f"TEST: {test}")
        except IsolationUnavailable as exc:
            raise _fail(str(exc), code=1) from None
        console.print(report, highlight=False, markup=False, soft_wrap=True)
        console.print(f"({state['tests_left']} quick tests left this round)", highlight=False)

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
        from ..results.run_directory import RunError

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
        from ..discovery.run_report import render_report
        from ..results.run_directory import RunDirectory, RunError

        try:
            directory = RunDirectory.open(run)
            if directory.config.get("kind") == "collab":
                from ..collab.frontier_report import render_collab_report

                paths = render_collab_report(directory)
            else:
                paths = render_report(directory)
        except RunError as exc:
            raise _fail(str(exc)) from None
        console.print("  ".join(str(p) for p in paths.values()), highlight=False)
