import json

from conftest import tiny_store
from typer.testing import CliRunner

from autotts.cli import app

runner = CliRunner()


def test_envs_lists_the_shipped_stores(env_dir):
    result = runner.invoke(app, ["envs", "--env-dir", str(env_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Qwen3-8B/aime24" in result.output and "Qwen3-0.6B/aime25" in result.output


def test_envs_reports_a_malformed_store(tmp_path):
    tiny_store(tmp_path / "Good" / "a.json", [[["1"], 600, "1"]])
    (tmp_path / "Bad").mkdir()
    (tmp_path / "Bad" / "b.json").write_text('[{"question": "q"')
    result = runner.invoke(app, ["envs", "--env-dir", str(tmp_path)], env={"COLUMNS": "300"})
    assert result.exit_code == 1
    assert "Good/a" in result.output and "not valid JSON" in result.output


def test_evaluate_writes_table_plot_and_traces_then_trace_show(env_dir, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "esc",
            "-e",
            "Qwen3-8B/aime24",
            "--grid",
            "n=8,16",
            "--seeds",
            "3",
            "--workers",
            "1",
            "--out",
            str(out),
            "--env-dir",
            str(env_dir),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert (out / "results.md").read_text().count("| esc |") == 2
    assert (out / "curves.png").is_file() and (out / "curves.svg").is_file()
    trace_file = next((out / "traces").glob("esc__n=8__*.jsonl"))
    shown = runner.invoke(
        app, ["trace", "show", str(trace_file), "--question", "2"], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0, shown.output
    assert "question 2" in shown.output and "read" in shown.output
    listed = runner.invoke(
        app, ["trace", "show", str(trace_file), "--list"], env={"COLUMNS": "200"}
    )
    assert listed.exit_code == 0 and listed.output.count("✓") + listed.output.count("✗") == 30


def test_bad_input_exit_codes(env_dir, tmp_path):
    unknown = runner.invoke(
        app, ["evaluate", "sc", "-e", "Qwen3-9B/aime24", "--env-dir", str(env_dir)]
    )
    assert unknown.exit_code == 2 and "Qwen3-9B/aime24" in unknown.output
    bad_spec = runner.invoke(app, ["compare", "sc@n", "--env-dir", str(env_dir)])
    assert bad_spec.exit_code == 2 and "key=value" in bad_spec.output
    missing_ctrl = runner.invoke(
        app, ["evaluate", "nope", "--seeds", "1", "--env-dir", str(env_dir), "--out", str(tmp_path)]
    )
    assert missing_ctrl.exit_code == 2 and "unknown controller 'nope'" in missing_ctrl.output
    broken_trace = tmp_path / "t.jsonl"
    broken_trace.write_text(json.dumps({"env": "x"}) + "\n")
    shown = runner.invoke(app, ["trace", "show", str(broken_trace)])
    assert shown.exit_code == 2 and "t.jsonl:1" in shown.output


def test_check_command(env_dir):
    result = runner.invoke(
        app, ["check", "asc", "--questions", "3", "--seeds", "2", "--env-dir", str(env_dir)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS") == 5


def test_help_everywhere():
    for args in (
        [],
        ["envs"],
        ["evaluate"],
        ["compare"],
        ["check"],
        ["trace", "show"],
        ["trace", "schema"],
    ):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, args


def test_bad_specs_exit_2_before_anything_runs_or_is_created(env_dir, tmp_path):
    out = tmp_path / "out"
    cases = {
        ("cmcc",): "did you mean cmc?",
        ("cmc@beta=1.5",): "beta must lie in [0, 1], got 1.5",
        ("cmc@beta=abc",): "beta='abc' is not a number",
        ("sc@n=abc",): "n='abc' is not a number (the schedule gives n=64)",
        ("sc@m=4",): "sc has no parameter 'm'; its schedule defines n",
        ("sc", "--grid", "n=abc"): "n='abc' is not a number",
    }
    for args, message in cases.items():
        result = runner.invoke(
            app,
            ["evaluate", *args, "-e", "Qwen3-8B/aime24", "--env-dir", str(env_dir), "-o", str(out)],
            env={"COLUMNS": "300"},
        )
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
        assert not out.exists(), args


def test_check_fails_a_hung_controller_within_seconds(env_dir):
    import time

    from conftest import fixture_controller

    start = time.monotonic()
    result = runner.invoke(
        app, ["check", str(fixture_controller("hangs")), "--env-dir", str(env_dir)]
    )
    assert result.exit_code == 1
    assert "episode did not finish within 3 s of CPU time" in result.output
    assert time.monotonic() - start < 30


def test_results_record_their_provenance_and_are_never_mixed(env_dir, tmp_path):
    import hashlib

    out = tmp_path / "out"
    args = ["evaluate", "sc@n=2", "-e", "Qwen3-8B/aime24", "--seeds", "2"]
    args += ["--env-dir", str(env_dir), "-o", str(out)]
    first = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    assert "evaluating 1 configs × 1 envs × 2 seeds: " in first.output  # not a terminal: lines
    assert "(100 %)" in first.output
    record = json.loads((out / "run.json").read_text())
    store = (env_dir / "Qwen3-8B" / "aime24.json").read_bytes()
    assert record["stores_sha256"] == {"Qwen3-8B/aime24": hashlib.sha256(store).hexdigest()}
    assert record["seeds"] == 2 and record["autotts_version"] and record["command"]
    assert record["git_revision"] is None or len(record["git_revision"]) >= 40
    again = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 2 and "--overwrite" in again.output
    stale = out / "traces" / "stale.jsonl"
    stale.write_text("{}\n")
    replaced = runner.invoke(app, [*args, "--overwrite"], env={"COLUMNS": "200"})
    assert replaced.exit_code == 0 and not stale.exists()
    assert (out / "results.csv").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_json_output_parses(env_dir, tmp_path):
    from conftest import fixture_controller

    listed = runner.invoke(app, ["envs", "--env-dir", str(env_dir), "--json"])
    assert listed.exit_code == 0
    envs = json.loads(listed.stdout)["environments"]
    assert {"Qwen3-8B/aime24", "Qwen3-0.6B/aime25"} <= {e["id"] for e in envs}
    assert all(e["questions"] == 30 and e["branches"] == 128 for e in envs)
    result = runner.invoke(
        app,
        ["compare", "sc@n=2", f"{fixture_controller('raises')}@beta=0", "-e", "Qwen3-8B/aime24"]
        + ["--seeds", "2", "--env-dir", str(env_dir), "-o", str(tmp_path / "o"), "--json"],
    )
    assert result.exit_code == 1  # the raising controller failed
    rows = json.loads(result.stdout)
    assert rows[0]["controller"] == "sc" and rows[0]["accuracy_interval"][0] <= rows[0]["accuracy"]
    assert rows[1]["errors"] == 60 and rows[1]["status"] != "ok" and rows[1]["accuracy"] is not None


def test_raise_stops_at_the_first_controller_error_with_its_traceback(env_dir, tmp_path):
    from conftest import fixture_controller

    result = runner.invoke(
        app,
        ["evaluate", str(fixture_controller("raises")), "--betas", "0", "-e", "Qwen3-8B/aime24"]
        + ["--seeds", "2", "--env-dir", str(env_dir), "-o", str(tmp_path / "o"), "--raise"],
    )
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.output
    assert 'raises.py", line' in result.output and "ValueError: boom" in result.output
