"""--mlflow: a real local MLflow store (SQLite, what MLflow 3 keeps developing; its file
store refuses new runs), read back with MLflow's own client."""

import csv
import sys

import pytest
from typer.testing import CliRunner

from autotts.cli import app
from autotts.cli.tracking import metric_key, require, resolve
from autotts.errors import BadInput

mlflow = pytest.importorskip("mlflow")
runner = CliRunner()


def logged_runs(folder, experiment):
    client = mlflow.MlflowClient(resolve(str(folder))[0])
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id])


def test_evaluate_logs_rows_params_and_files(env_dir, tmp_path):
    out, store = tmp_path / "out", tmp_path / "mlruns"
    result = runner.invoke(
        app,
        ["compare", "sc@n=1,4", "cmc@beta=0.5", "-e", "Qwen3-8B/aime24", "--seeds", "3"]
        + ["--env-dir", str(env_dir), "-o", str(out), "--mlflow", str(store)],
    )
    assert result.exit_code == 0, result.output
    client, (run,) = logged_runs(store, "autotts")
    assert run.info.status == "FINISHED" and run.data.params["seeds"] == "3"
    assert run.data.params["configurations"] == "sc n=1, sc n=4, cmc β=0.5"
    assert run.data.params["git_revision"]  # provenance from run.json
    metrics = run.data.metrics
    for row in csv.DictReader((out / "results.csv").open()):
        key = metric_key(row["controller"], row["setting"], row["env"])
        assert metrics[f"{key}/accuracy"] == pytest.approx(float(row["accuracy"]))
        assert metrics[f"{key}/accuracy/low"] <= metrics[f"{key}/accuracy"]
        assert metrics[f"{key}/tokens"] == pytest.approx(float(row["mean_tokens"]))
    assert "cmc/beta_0.5/Qwen3-8B/aime24/accuracy/se" in metrics
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"results.csv", "results.md", "run.json", "curves.png", "traces"} <= files
    again = runner.invoke(
        app,
        ["evaluate", "sc", "--grid", "n=2", "-e", "Qwen3-8B/aime24", "--seeds", "1"]
        + ["--env-dir", str(env_dir), "-o", str(tmp_path / "two"), "--mlflow", str(store)],
    )
    assert again.exit_code == 0 and len(logged_runs(store, "autotts")[1]) == 2  # same experiment


def test_bad_targets_are_refused_before_anything_runs(env_dir, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["evaluate", "sc", "-e", "Qwen3-8B/aime24", "--env-dir", str(env_dir)]
        + ["-o", str(out), "--mlflow", str(blocker / "store")],
    )
    assert result.exit_code == 2 and "is a file" in result.output and not out.exists()
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if MLflow were not installed
    with pytest.raises(BadInput, match=r"pip install 'autotts\[tracking\]'"):
        require(str(tmp_path / "store"))


def test_a_tracker_that_fails_costs_no_result(env_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["evaluate", "sc", "--grid", "n=1", "-e", "Qwen3-8B/aime24", "--seeds", "1"]
        + ["--env-dir", str(env_dir), "-o", str(out), "--mlflow", "http://127.0.0.1:9"],
    )
    assert result.exit_code == 0 and "MLflow logging failed" in result.output
    assert (out / "results.csv").exists() and (out / "run.json").exists()


def test_targets_resolve_to_uris(tmp_path):
    assert resolve("http://host:5000") == ("http://host:5000", None)
    uri, artifacts = resolve(str(tmp_path / "m"))
    assert uri == f"sqlite:///{tmp_path / 'm' / 'mlflow.db'}"
    assert artifacts == (tmp_path / "m" / "artifacts").as_uri()
    assert metric_key("cmc", "β=0.5", "Qwen3-8B/aime24", "accuracy") == (
        "cmc/beta_0.5/Qwen3-8B/aime24/accuracy"
    )
