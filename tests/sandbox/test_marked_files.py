"""Paths that run controller code say whether they sandbox it: files marked untrusted run in
the sandbox unless told otherwise, any file with --sandbox, none with --no-sandbox."""

import subprocess
import sys
from pathlib import Path

import pytest

from autotts.evaluation.checker import check_controller
from autotts.evaluation.evaluator import RunConfig, evaluate
from autotts.loading.controller_files import UNTRUSTED_MARK, has_untrusted_mark
from autotts.sandbox import isolation_problems
from autotts.sandbox.sandboxed_evaluation import is_marked_untrusted, mark_untrusted

pytestmark = pytest.mark.skipif(bool(isolation_problems()), reason="no OS isolation here")

ENV = "Qwen3-8B/aime24"
# answers "pid1" only where it runs as PID 1 of its own PID namespace: inside the sandbox
WHERE_AM_I = """
import dataclasses
import operator
from autotts import Branch, Continue, Controller


class WhereAmI(Controller):
    name = "where-am-i"

    @staticmethod
    def schedule(beta):
        return {"width": 1 + round(3 * beta)}

    def run(self, state, width):
        yield Branch(width)
        while state.active():
            yield Continue(state.active())
        pid = operator.attrgetter("sys.modules")(dataclasses)["os"].getpid()  # (unchecked)
        return "pid1" if pid == 1 else "elsewhere"
"""


@pytest.fixture
def files(tmp_path):
    plain = tmp_path / "where_am_i.py"
    plain.write_text(WHERE_AM_I)
    marked = tmp_path / "where_am_i_marked.py"
    marked.write_text(mark_untrusted(WHERE_AM_I, "written by an LLM in a test"))
    return plain, marked


def answers(path, env_dir, **kwargs):
    report = evaluate(
        [RunConfig(str(path), beta=0.0)], [ENV], seeds=2, env_dir=env_dir, trace_seeds=2, **kwargs
    )
    (row,) = report.rows
    assert row.status == "ok", row.status
    return {t["answer"] for unit in report.units for t in unit.traces}, row


def test_the_mark_is_recognised(files):
    plain, marked = files
    assert is_marked_untrusted(marked) and not is_marked_untrusted(plain)
    assert not is_marked_untrusted("cmc")


def test_marked_files_run_sandboxed_unless_told_otherwise(files, env_dir):
    plain, marked = files
    inside, sandboxed = answers(marked, env_dir)
    assert inside == {"pid1"}
    outside, trusted = answers(marked, env_dir, sandbox=False)
    assert outside == {"elsewhere"}
    assert answers(plain, env_dir)[0] == {"elsewhere"}
    assert answers(plain, env_dir, sandbox=True)[0] == {"pid1"}
    # the sandboxed path gives the same numbers as the in-process one
    assert (sandboxed.tokens, sandboxed.episodes) == (trusted.tokens, trusted.episodes)


def test_check_runs_marked_files_sandboxed(files, env_dir):
    plain, marked = files
    report = check_controller(str(marked), ENV, env_dir=env_dir, questions=2, seeds=2)
    assert report.ok, report.items
    assert report.items[0].detail == "loads in the sandbox"
    assert "fresh process" in next(i.detail for i in report.items if i.name == "deterministic")
    in_process = check_controller(
        str(marked), ENV, env_dir=env_dir, questions=2, seeds=2, sandbox=False
    )
    assert in_process.ok and in_process.items[0].detail != "loads in the sandbox"


def test_the_cli_sandboxes_and_refuses_clearly(files, env_dir, tmp_path):
    plain, marked = files
    done = subprocess.run(
        [sys.executable, "-m", "autotts.cli", "check", str(plain), "--sandbox", "-e", ENV,
         "--questions", "2", "--seeds", "1", "--env-dir", str(env_dir)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loads in the sandbox" in done.stdout
    hostile = tmp_path / "hostile.py"
    hostile.write_text(mark_untrusted("import socket\n" + WHERE_AM_I, "test"))
    done = subprocess.run(
        [sys.executable, "-m", "autotts.cli", "evaluate", str(hostile), "-e", ENV, "--betas", "0",
         "--seeds", "1", "-o", str(tmp_path / "out"), "--env-dir", str(env_dir)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1
    assert "sandbox: static check" in (done.stdout + done.stderr).replace("\n", " ")
    assert Path(tmp_path / "out" / "results.csv").exists()


def test_a_graph_never_runs_a_marked_file_in_process(files, env_dir):
    from autotts.collab import CollabGraph, GraphError, compile_graph
    from autotts.envs.cross_model import CrossModelEnvironment

    plain, marked = files
    env = CrossModelEnvironment.load("aime24", ["Qwen3-8B"], env_dir)

    def graph(controller):
        node = {"id": "g", "role": "generate", "model": "Qwen3-8B", "controller": str(controller)}
        return CollabGraph.from_data({"nodes": [node]})

    controller = compile_graph(graph(plain), env)
    assert env.run_episode(controller, controller.params(0.0), 0, 0).answer == "elsewhere"
    with pytest.raises(GraphError, match="marked as LLM-written"):
        compile_graph(graph(marked), env)


# Top-level code that leaves a trace wherever it runs outside the sandbox (inside, the write
# fails: the worker can write no file).
LEAVES_A_TRACE = "open({marker!r}, 'w').write('ran')\n"


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "{marked}", "--betas", "0", "--seeds", "1"],
        ["evaluate", "{plain}", "--sandbox", "--betas", "0", "--seeds", "1"],
        ["evaluate", "{plain}@width=2", "--sandbox", "--seeds", "1"],
        ["compare", "{marked}", "--preset", "baselines", "--seeds", "1"],
        ["compare", "{plain}", "--preset", "paper", "--sandbox", "--seeds", "1"],
        ["check", "{marked}", "--questions", "1", "--seeds", "1"],
        ["check", "{plain}", "--sandbox", "--questions", "1", "--seeds", "1"],
        ["evaluate", "{bom}", "--betas", "0", "--seeds", "1"],
        ["evaluate", "{candidate}", "--betas", "0", "--seeds", "1"],
        ["compare", "{candidate}", "--preset", "baselines", "--seeds", "1"],
        ["validate", "{marked}", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
         "--questions", "replay:Qwen3-8B/aime24", "--limit", "1"],
        ["serve", "{marked}", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
         "--port", "1"],
        ["serve", "{candidate}", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
         "--port", "1"],
    ],
    ids=["evaluate-marked", "evaluate-sandbox", "evaluate-sandbox-override", "compare-baselines",
         "compare-paper-sandbox", "check-marked", "check-sandbox", "evaluate-bom-marked",
         "evaluate-run-candidate", "compare-run-candidate", "validate-marked", "serve-marked",
         "serve-run-candidate"],
)  # fmt: skip
def test_no_entry_runs_untrusted_code_in_the_trusted_process(command, env_dir, tmp_path):
    marker = tmp_path / "ran-in-the-parent"
    source = LEAVES_A_TRACE.format(marker=str(marker)) + WHERE_AM_I
    plain = tmp_path / "plain.py"
    plain.write_text(source)
    marked = tmp_path / "marked.py"
    marked.write_text(mark_untrusted(source, "test"))
    bom = tmp_path / "bom.py"  # saved by an editor that writes a byte-order mark
    bom.write_text("\ufeff" + mark_untrusted(source, "test"), encoding="utf-8")
    candidate = legacy_run_candidate(tmp_path / "run", source)
    args = [a.format(plain=plain, marked=marked, bom=bom, candidate=candidate) for a in command]
    if args[0] in ("evaluate", "compare"):
        args += ["-e", ENV, "-o", str(tmp_path / "out")]
    if args[0] == "check":
        args += ["-e", ENV]
    if args[0] != "serve":
        args += ["--env-dir", str(env_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "autotts.cli", *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert not marker.exists(), done.stdout[-2000:] + done.stderr[-2000:]
    if args[0] in ("validate", "serve"):  # (they would play it sandboxed: refused before)
        assert done.returncode != 0
        assert "static check" in (done.stdout + done.stderr).replace("\n", " ")


def legacy_run_candidate(run: Path, source: str) -> Path:
    """A candidate as runs from before the mark stored it: unmarked, in the run's folders."""
    folder = run / "candidates" / "0003"
    folder.mkdir(parents=True)
    (run / "history.jsonl").write_text("")
    (folder / "controller.py").write_text(source)
    return folder / "controller.py"


def test_a_run_writes_its_candidates_marked_and_reads_them_back_unmarked(tmp_path):
    from autotts.results.run_directory import RunDirectory

    run = RunDirectory.create(tmp_path / "run", {"proposer": "llm"})
    run.write_candidate(0, source=WHERE_AM_I)
    stored = run.candidate_dir(0) / "controller.py"
    assert has_untrusted_mark(stored.read_text()) and is_marked_untrusted(stored)
    assert run.candidate_source(0) == WHERE_AM_I
    run.write_candidate(1, source=stored.read_text())  # marked once, not twice
    assert (run.candidate_dir(1) / "controller.py").read_text().count(UNTRUSTED_MARK) == 1
    assert run.candidate_source(2) is None


def test_a_coding_agents_workspace_is_llm_written(tmp_path):
    """What a coding agent leaves in its workspace, and the run's best so far copied there for
    it, never run in the parent; the run's own family file (written from Optuna's
    parameters) and a file beside the run are the user's."""
    from autotts.loading.controller_files import UntrustedCode, load_controller

    run = tmp_path / "run"
    legacy_run_candidate(run, WHERE_AM_I)
    workspace = run / "agent" / "0001"
    workspace.mkdir(parents=True)
    (workspace / "history.jsonl").write_text("")  # a workspace holds a copy of the log
    (workspace / "a" / "b").mkdir(parents=True)  # an agent may nest its files at any depth
    for name in ("controller.py", "best.py", "helper.py", "a/b/controller.py"):
        (workspace / name).write_text(WHERE_AM_I)
        assert is_marked_untrusted(workspace / name)
        with pytest.raises(UntrustedCode):
            load_controller(str(workspace / name))
    (run / "family").mkdir()
    (run / "family" / "controller.py").write_text(WHERE_AM_I)
    (tmp_path / "mine.py").write_text(WHERE_AM_I)
    assert not is_marked_untrusted(run / "family" / "controller.py")
    assert not is_marked_untrusted(tmp_path / "mine.py")


def test_a_byte_order_mark_or_a_legacy_run_folder_does_not_hide_llm_code(tmp_path):
    from autotts.loading.controller_files import UntrustedCode, load_controller

    marker = tmp_path / "ran"
    source = LEAVES_A_TRACE.format(marker=str(marker)) + WHERE_AM_I
    bom = tmp_path / "bom.py"
    bom.write_text("\ufeff" + mark_untrusted(source, "t"), encoding="utf-8")
    candidate = legacy_run_candidate(tmp_path / "run", source)
    for path in (bom, candidate):
        assert is_marked_untrusted(path)
        with pytest.raises(UntrustedCode, match="never runs in this process"):
            load_controller(str(path))
    assert not marker.exists()
    not_a_run = tmp_path / "elsewhere" / "candidates" / "0001" / "controller.py"
    not_a_run.parent.mkdir(parents=True)
    not_a_run.write_text(WHERE_AM_I)
    assert not is_marked_untrusted(not_a_run)  # no run log beside it: the user's own file


def test_the_python_api_refuses_to_import_a_marked_file(tmp_path):
    from autotts.loading.controller_files import UntrustedCode, load_controller

    marker = tmp_path / "ran"
    marked = tmp_path / "marked.py"
    marked.write_text(mark_untrusted(LEAVES_A_TRACE.format(marker=str(marker)) + WHERE_AM_I, "t"))
    with pytest.raises(UntrustedCode, match="never runs in this process"):
        load_controller(str(marked))
    assert not marker.exists()
