"""Coding agents as proposers (``autotts discover --agent-cmd CMD``): each round runs a
program of the user's choosing (Claude Code, Codex CLI, aider, a script) in a workspace of
its own, and takes the controller it leaves there.

The workspace (``RUN/agent/NNNN/``, ``NNNN`` the round's candidate) holds:

- ``TASK.md``: the controller contract and the round's prompt (what a chat model is sent),
  plus how to work here; it is also the command's standard input;
- ``best.py``: the best candidate so far by the objective (when there is one);
- ``history.jsonl``: the run's round and lesson records so far;
- ``quicktest``: runs ``autotts quicktest`` (a sandboxed quick test with paired differences
  against CMC and SC@64) for this round, within its budget of tests; it always runs the
  draft in the OS sandbox, whatever the workspace's files say (the agent can change them),
  so on a machine without isolation the agent's quick tests are refused;
- ``controller.py``: what the agent must leave: the round's candidate.

The command runs through ``/bin/sh -c`` with the workspace as its working directory and
``AUTOTTS_WORKSPACE``, ``AUTOTTS_TASK`` and ``AUTOTTS_ROUND`` set, in a process group of its
own, with the user's rights (it is the user's own tool; the controller it writes is untrusted
and only ever runs in the sandbox). A command that exits non-zero, runs past
``timeout_s`` (its whole process group is killed) or leaves no ``controller.py`` makes a
failed round; the loop goes on. Its output is kept (``agent.out``/``agent.err``, the last
1 MB each) and its usage recorded when it reports any: a ``usage.json`` it writes
(``{"usd": …, "prompt_tokens": …, "completion_tokens": …}``) or a last line of JSON output
with ``total_cost_usd`` and ``usage`` (Claude Code's ``--output-format json``); the run's
``--max-usd``/``--max-llm-tokens`` apply to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..loading.controller_files import mark_untrusted
from ..utils.atomic_files import atomic_write_text
from .proposer import MAX_TESTS, Proposer
from .replies import prompt

OUTPUT_BYTES = 1 << 20  # of each of the agent's streams, kept in the workspace


class AgentProposer(Proposer):
    """Rounds written by a coding agent (see the module docstring)."""

    def __init__(self, run, settings, command: str, timeout_s: float, envs: dict, isolate=True):
        super().__init__(run, settings, envs, isolate)
        self.command, self.timeout_s = command, timeout_s

    def workspace(self, number: int) -> Path:
        return self.run.path / "agent" / f"{number:04d}"

    def run_round(self, number: int) -> dict:
        workspace = self.prepare(number)
        agent = self.run_agent(workspace, number)
        controller = workspace / "controller.py"
        source, error = None, agent.pop("error", None)
        if error is None and not controller.is_file():
            error = "the agent left no controller.py in its workspace"
        if error is None:
            source = controller.read_text(encoding="utf-8", errors="replace")
        return self.finish_round(number, source, error, agent=agent)

    def prepare(self, number: int) -> Path:
        """The round's workspace, written afresh."""
        workspace = self.workspace(number)
        workspace.mkdir(parents=True, exist_ok=True)
        for stale in ("controller.py", "usage.json"):
            with contextlib.suppress(FileNotFoundError):
                (workspace / stale).unlink()
        task = "\n\n".join([self.system_text(), self.round_text(number), prompt("coding_agent.md")])
        atomic_write_text(workspace / "TASK.md", task)
        best = self._best_source()
        if best is not None:  # LLM-written: marked, as the run's candidates are
            atomic_write_text(workspace / "best.py", mark_untrusted(best, "the run's best so far"))
        records = [r for r in self.run.records() if r.get("event") in ("round", "lesson")]
        atomic_write_text(
            workspace / "history.jsonl", "".join(json.dumps(r) + "\n" for r in records)
        )
        state = {"run": str(self.run.path), "round": number, "tests_left": MAX_TESTS}
        atomic_write_text(workspace / "quicktest.json", json.dumps(state))
        script = workspace / "quicktest"
        atomic_write_text(
            script,
            f'#!/bin/sh\nexec "{sys.executable}" -m autotts.cli quicktest --workspace '
            f'"{workspace}" "$@"\n',
        )
        script.chmod(0o755)
        return workspace

    def run_agent(self, workspace: Path, number: int) -> dict:
        """Run the command to its end or its time limit: what it did, for the record."""
        env = dict(os.environ)
        env.update(
            AUTOTTS_WORKSPACE=str(workspace),
            AUTOTTS_TASK=str(workspace / "TASK.md"),
            AUTOTTS_ROUND=str(number + 1),
        )
        start = time.monotonic()
        out_path, err_path = workspace / "agent.out", workspace / "agent.err"
        with (
            open(workspace / "TASK.md", "rb") as stdin,
            open(out_path, "wb") as out,
            open(err_path, "wb") as err,
        ):
            process = subprocess.Popen(
                ["/bin/sh", "-c", self.command],
                cwd=workspace,
                env=env,
                stdin=stdin,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            timed_out = False
            try:
                code = process.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                code = process.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever it left running
        for path in (out_path, err_path):
            _keep_tail(path)
        seconds = time.monotonic() - start
        tested = MAX_TESTS - json.loads((workspace / "quicktest.json").read_text())["tests_left"]
        agent = {"exit": code, "seconds": round(seconds, 3), "quick_tests": tested}
        usage = _usage(workspace, out_path)
        if usage:
            agent["usage"] = usage
            self.run.append({"event": "llm_usage", "round": number, **usage,
                             "seconds": seconds})  # fmt: skip
        if timed_out:
            agent["error"] = (
                f"the agent ran past its time limit ({self.timeout_s:g} s) and was stopped"
            )
        elif code != 0:
            tail = err_path.read_text(errors="replace").strip().splitlines()[-3:]
            agent["error"] = f"the agent exited with code {code}: {' | '.join(tail)[:500]}"
        return agent


def _keep_tail(path: Path) -> None:
    size = path.stat().st_size
    if size > OUTPUT_BYTES:
        with open(path, "rb") as handle:
            handle.seek(size - OUTPUT_BYTES)
            tail = handle.read()
        path.write_bytes(b"[... cut ...]\n" + tail)


def _usage(workspace: Path, out_path: Path) -> dict:
    """What the agent reported spending (``usage.json``, or Claude Code's JSON result)."""
    report = {}
    with contextlib.suppress(OSError, ValueError):
        report = json.loads((workspace / "usage.json").read_text())
    if not report:
        lines = out_path.read_text(errors="replace").strip().splitlines()
        with contextlib.suppress(ValueError, IndexError):
            last = json.loads(lines[-1])
            tokens = last.get("usage") or {}
            report = {
                "usd": last.get("total_cost_usd"),
                "prompt_tokens": tokens.get("input_tokens", 0),
                "completion_tokens": tokens.get("output_tokens", 0),
            }
    if not isinstance(report, dict):
        return {}
    usage = {}
    for key in ("usd", "prompt_tokens", "completion_tokens"):
        value = report.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            usage[key] = value
    return usage


__all__ = ["AgentProposer"]
