"""Coding agents as proposers (``discover --agent-cmd``), driven by a scripted agent program:
it reads its task, runs the sandboxed quick test itself and leaves a controller; a hung
agent and a crashing one make failed rounds, never a hang, and leave nothing running."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import SMALL_DISCOVERY

from autotts.loading.controller_files import has_untrusted_mark, is_marked_untrusted
from autotts.results.run_directory import RunDirectory

CMC = Path(__file__).parents[2] / "controllers" / "baselines" / "cmc.py"

AGENT = textwrap.dedent(
    """
    import json, os, pathlib, subprocess, sys, time

    workspace = pathlib.Path(os.environ["AUTOTTS_WORKSPACE"])
    task = sys.stdin.read()
    number = int(os.environ["AUTOTTS_ROUND"])
    mode = sys.argv[2].split(",")[number - 1]
    (workspace / "pid").write_text(str(os.getpid()))
    if mode == "hang":
        time.sleep(600)
    if mode == "crash":
        sys.stderr.write("the agent fell over\\n")
        sys.exit(3)
    assert "# Objective" in task and "./quicktest" in task and os.environ["AUTOTTS_TASK"]
    draft = workspace / "draft.py"
    draft.write_text(pathlib.Path(sys.argv[1]).read_text())
    outputs = []
    for _ in range(3 if mode == "ok" else 0):  # one more than the round's budget
        test = ["./quicktest", "draft.py", "--test", "betas=0,1 seeds=2"]
        done = subprocess.run(test, capture_output=True, text=True, cwd=workspace)
        outputs.append({"code": done.returncode, "out": done.stdout + done.stderr})
    (workspace / "tests.json").write_text(json.dumps(outputs))
    (workspace / "controller.py").write_text(draft.read_text())
    usage = {"usd": 0.25, "prompt_tokens": 1000, "completion_tokens": 200}
    (workspace / "usage.json").write_text(json.dumps(usage))
    print("left controller.py")
    """
)


def discover(tmp_path, env_dir, modes: str, *extra):
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    command = f"{sys.executable} {script} {CMC} {modes}"
    cmd = [sys.executable, "-m", "autotts.cli", "discover", "-o", str(tmp_path / "run"),
           "--agent-cmd", command, *extra, *SMALL_DISCOVERY, "--workers", "2",
           "--env-dir", str(env_dir)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def test_a_scripted_agent_tests_its_draft_and_leaves_the_round_its_controller(tmp_path, env_dir):
    done = discover(tmp_path, env_dir, "ok", "--trials", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    run = RunDirectory.open(tmp_path / "run")
    (round_,) = [r for r in run.rounds() if r.get("stage") == "llm"]
    assert round_["status"] == "ok" and round_["objective"]
    assert round_["agent"]["exit"] == 0 and round_["agent"]["quick_tests"] == 2
    assert round_["agent"]["usage"] == {
        "usd": 0.25,
        "prompt_tokens": 1000,
        "completion_tokens": 200,
    }
    assert [r["usd"] for r in run.records() if r.get("event") == "llm_usage"] == [0.25]
    workspace = tmp_path / "run" / "agent" / "0000"
    tests = json.loads((workspace / "tests.json").read_text())
    assert [t["code"] for t in tests] == [0, 0, 2]  # the third is over the budget
    assert "vs CMC at equal tokens" in tests[0]["out"] and "vs SC@64" in tests[0]["out"]
    assert "no quick tests left this round" in tests[2]["out"]
    assert (workspace / "agent.out").read_text().strip() == "left controller.py"
    assert run.candidate_source(0) == CMC.read_text()
    stored = run.candidate_dir(0) / "controller.py"
    assert is_marked_untrusted(stored) and has_untrusted_mark(stored.read_text())
    assert run.stage_done("best")["candidate"] == "0000"


def test_hung_and_crashing_agents_make_failed_rounds(tmp_path, env_dir):
    done = discover(tmp_path, env_dir, "hang,crash,quiet", "--trials", "3", "--agent-timeout", "5")
    assert done.returncode == 0, done.stderr[-3000:]
    run = RunDirectory.open(tmp_path / "run")
    rounds = [r for r in run.rounds() if r.get("stage") == "llm"]
    assert [r["status"] for r in rounds] == ["failed", "failed", "ok"]
    assert "ran past its time limit (5 s)" in rounds[0]["reason"]
    assert "exited with code 3" in rounds[1]["reason"]
    assert "the agent fell over" in rounds[1]["reason"]
    hung = int((tmp_path / "run" / "agent" / "0000" / "pid").read_text())
    try:
        os.kill(hung, 0)
        alive = Path(f"/proc/{hung}/status").read_text().split("State:")[1].split()[0] != "Z"
    except ProcessLookupError:
        alive = False
    assert not alive, "the hung agent was left running"


def test_nothing_in_the_workspace_switches_the_sandbox_off(tmp_path, env_dir, monkeypatch):
    """The agent can rewrite its workspace (quicktest.json included): its quick tests still
    run isolated."""
    from typer.testing import CliRunner

    from autotts.cli import app
    from autotts.discovery.proposer import Proposer

    run = RunDirectory.create(
        tmp_path / "run",
        {"strategy": "agent", "search": {"search_envs": ["Qwen3-8B/aime24"], "seeds": 2,
                                         "env_dir": str(env_dir)}},
    )  # fmt: skip
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "draft.py").write_text(CMC.read_text())
    forged = {"run": str(run.path), "round": 0, "tests_left": 2, "isolate": False}
    (workspace / "quicktest.json").write_text(json.dumps(forged))
    seen = []
    monkeypatch.setattr(Proposer, "quick_test", lambda self, *_: seen.append(self.isolate) or "")
    done = CliRunner().invoke(app, ["quicktest", str(workspace / "draft.py"), "--workspace",
                                    str(workspace)])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert seen == [True]
