import json

import pytest
from conftest import fixture_controller
from typer.testing import CliRunner

from autotts.cli import app
from autotts.evaluation.evaluator import evaluate
from autotts.loading.run_configs import parse_spec
from autotts.results.evaluation_report import write_outputs
from autotts.results.traces import read_traces

runner = CliRunner()


def test_failures_are_recorded_and_other_controllers_continue(env_dir, tmp_path):
    configs = (
        parse_spec(f"{fixture_controller('raises')}@beta=0")
        + parse_spec(f"{fixture_controller('hangs')}@beta=0")
        + parse_spec(f"{fixture_controller('syntax_error')}@beta=0")
        + parse_spec("sc@n=4")
    )
    report = evaluate(
        configs,
        ["Qwen3-8B/aime24"],
        env_dir=env_dir,
        seeds=2,
        workers=2,
        time_limit_s=0.5,
        trace_seeds=1,
    )
    status = {row.controller: row.status for row in report.rows}
    assert "controller bug: ValueError: boom" in status["raises"]
    assert "raises.py:" in status["raises"]  # the controller's own file and line
    assert "exceeded the CPU-time limit of 0.5 s" in status["hangs"]
    assert status["hangs"].startswith("failed: stopped after 2 episodes ran past")
    assert status["syntax-error"].startswith("failed:") and "syntax error" in status["syntax-error"]
    assert status["sc"] == "ok" and report.row("sc", "Qwen3-8B/aime24").episodes == 60
    paths = write_outputs(report, tmp_path)
    assert "boom" in paths["csv"].read_text()
    (trace_file,) = paths["traces"].glob("raises__*.jsonl")
    failed = next(read_traces(trace_file))
    *_, innermost = failed.traceback  # the trace file's error record holds the traceback
    assert innermost.file == str(fixture_controller("raises")) and innermost.function == "run"
    assert innermost.code == 'raise ValueError("boom from the controller")'
    assert innermost.line == 13
    shown = runner.invoke(app, ["trace", "show", str(trace_file)])
    assert 'raises.py", line 13, in run' in shown.output
    assert not next(read_traces(next(paths["traces"].glob("sc__*.jsonl")))).traceback
    assert paths["plot_png"].stat().st_size > 10_000 and paths["plot_svg"].read_text().startswith(
        "<?xml"
    )


def test_sweep_outputs_and_traces(env_dir, tmp_path):
    report = evaluate(
        parse_spec("cmc@beta=0,0.5,1"), ["Qwen3-4B/aime24"], env_dir=env_dir, seeds=5, workers=1
    )
    tokens = [row.tokens for row in report.rows]
    assert tokens == sorted(tokens)
    paths = write_outputs(report, tmp_path)
    files = sorted(paths["traces"].glob("*.jsonl"))
    assert len(files) == 3
    episodes = list(read_traces(files[0]))
    assert len(episodes) == 30 and {e.seed for e in episodes} == {0}
    first = episodes[0]
    assert first.steps[0].action == "branch" and first.tokens == first.steps[-1].tokens
    assert json.loads(files[0].read_text().splitlines()[0])["schema_version"] == 1
    per_question = paths["questions"].read_text().splitlines()
    assert len(per_question) == 1 + 3 * 30


def test_parallel_and_serial_give_identical_results(env_dir):
    configs = parse_spec("asc@n=16") + parse_spec("parallel-probe@n=8")
    serial = evaluate(
        configs, ["Qwen3-1.7B/aime25"], env_dir=env_dir, seeds=10, workers=1, trace_seeds=0
    )
    parallel = evaluate(
        configs, ["Qwen3-1.7B/aime25"], env_dir=env_dir, seeds=10, workers=2, trace_seeds=0
    )
    assert [(r.accuracy, r.tokens) for r in serial.rows] == [
        (r.accuracy, r.tokens) for r in parallel.rows
    ]


def test_a_repeated_configuration_is_evaluated_once(env_dir):
    report = evaluate(
        parse_spec("sc@n=8") * 2, ["Qwen3-8B/aime24"] * 2, env_dir=env_dir, seeds=5, trace_seeds=0
    )
    assert len(report.rows) == 1 and report.rows[0].episodes == 150


def test_the_package_exports_the_evaluate_function_not_a_module():
    import autotts
    import autotts.evaluation.evaluator  # importing the implementation must not shadow the function
    from autotts import evaluate as exported

    assert exported is autotts.evaluation.evaluator.evaluate and autotts.evaluate is exported


def test_classes_instances_and_names_give_the_same_numbers(env_dir, tmp_path):
    """The notebook path: a Controller class or instance (even one defined inside a function,
    which cannot be pickled and so runs in this process) evaluates exactly like its file."""
    import autotts
    from autotts.loading.controller_files import load_controller_class

    cmc = load_controller_class("cmc")

    class LocalCMC(cmc):  # local: not picklable, evaluated in-process
        name = "local-cmc"

    kwargs = dict(betas=[0.2, 0.8], seeds=4, env_dir=env_dir, workers=2)
    by_name = autotts.evaluate("cmc", "Qwen3-4B/aime24", **kwargs)
    by_class = autotts.evaluate(cmc, "Qwen3-4B/aime24", **kwargs)
    by_instance = autotts.evaluate(LocalCMC(), "Qwen3-4B/aime24", **kwargs)
    numbers = [
        [(r.setting, r.accuracy, r.tokens, r.status) for r in report.rows]
        for report in (by_name, by_class, by_instance)
    ]
    assert numbers[0] == numbers[1] == numbers[2]
    assert by_instance.rows[0].controller == "local-cmc"

    grid = autotts.evaluate("sc", "Qwen3-4B/aime24", n=[2, 8], seeds=3, env_dir=env_dir)
    assert [r.setting for r in grid.rows] == ["n=2", "n=8"]


def test_a_report_writes_what_the_cli_writes(env_dir, tmp_path):
    import autotts

    report = autotts.evaluate(
        ["sc@n=4", "cmc@beta=0.5"], "Qwen3-8B/aime24", seeds=2, env_dir=env_dir, workers=1
    )
    per_question = report.per_question()
    assert len(per_question) == 2 * 30 and set(per_question[0]) == {
        "controller",
        "setting",
        "env",
        "question",
        "accuracy",
        "mean_tokens",
    }
    text = report.to_csv(tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_bytes() == text.encode() and text.startswith("controller,")
    figure = report.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000 and figure.axes
    paths = report.save(tmp_path / "out")
    assert paths["csv"].read_bytes() == text.encode()
    assert "| sc | n=4 |" in report._repr_markdown_()


def test_curves_get_bands_of_their_accuracy_intervals(env_dir):
    import autotts

    report = autotts.evaluate("sc", "Qwen3-8B/aime24", n=[1, 4, 16], seeds=3, env_dir=env_dir)
    (ax, *_) = report.plot().axes
    (band,) = ax.collections  # one curve, one band
    (line,) = ax.get_lines()
    vertices = band.get_paths()[0].vertices
    for row in report.rows:
        at = vertices[abs(vertices[:, 0] - row.tokens) < 1e-6, 1]
        estimate = row.accuracy_estimate
        assert min(at) == pytest.approx(estimate.low) and max(at) == pytest.approx(estimate.high)
        assert estimate.low < row.accuracy < estimate.high
    assert band.get_facecolor()[0][:3] == pytest.approx(line_rgb(line))


def line_rgb(line):
    from matplotlib.colors import to_rgb

    return to_rgb(line.get_color())


def test_bad_controllers_and_envs_are_bad_input(env_dir):
    import autotts

    with pytest.raises(autotts.BadInput, match="cannot evaluate 42"):
        autotts.evaluate(42, "Qwen3-8B/aime24", env_dir=env_dir)
    with pytest.raises(autotts.BadInput, match="no environment matches"):
        autotts.evaluate("sc", "Nope-*/aime24", env_dir=env_dir)


def test_rows_carry_intervals_and_comparisons_are_paired(env_dir):
    import autotts
    from autotts.loading.run_configs import RunConfig

    report = autotts.evaluate(
        ["cmc@beta=1", "sc@n=1", RunConfig("cmc", label="cmc-again", beta=1.0)],
        "Qwen3-8B/aime24",
        seeds=10,
        env_dir=env_dir,
        workers=1,
    )
    cmc, sc, again = report.rows
    e = cmc.accuracy_estimate
    assert e.mean == pytest.approx(cmc.accuracy) and e.low < cmc.accuracy < e.high and e.se > 0
    assert cmc.tokens_estimate.low < cmc.tokens < cmc.tokens_estimate.high
    assert "±" in cmc.accuracy_text and cmc.interval_text.startswith("[")
    assert report.compare(cmc, sc).kind == "beats"
    assert report.compare(sc, cmc).kind == "worse"
    same = report.compare(again, cmc)
    assert same.kind == "no significant difference" and same.difference.mean == 0
    assert "accuracy_low" in report.to_csv().splitlines()[0]


def test_a_controller_object_evaluates_in_worker_processes(env_dir):
    """A controller instance goes to the workers as a copy; its rows still name it."""
    import autotts

    controller = autotts.load_controller("cmc")
    report = autotts.evaluate(
        [controller], "Qwen3-8B/aime24", betas=[0.5], seeds=2, env_dir=env_dir, workers=2
    )
    (row,) = report.rows
    assert row.status == "ok" and row.episodes == 60 and row.config.controller is controller
