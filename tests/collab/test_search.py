import csv
import json
import random

import numpy as np
import pytest
from llm_double import RecordedChatServer
from typer.testing import CliRunner

from autotts.cli import app
from autotts.cli.tracking import metric_key
from autotts.collab.evaluate import CrossSpec, GraphEvaluator
from autotts.collab.frontier import envelope, envelope_at, pareto, public, with_gains
from autotts.collab.graph_space import GraphSpace
from autotts.collab.search import (
    AgentSettings,
    GraphSearch,
    ProbabilisticGraph,
    agent_search,
    evaluations_to_reach,
    objective,
    optuna_search,
)
from autotts.discovery.llm import LLMClient
from autotts.loading.controller_files import load_controller
from autotts.results.run_directory import RunDirectory

MODELS = ("Qwen3-1.7B", "Qwen3-4B")


@pytest.fixture(scope="module")
def evaluator(env_dir):
    with GraphEvaluator(CrossSpec("aime24", MODELS, str(env_dir)), seeds=2, workers=1) as ev:
        yield ev


def test_reinforce_moves_probability_toward_the_better_option():
    space = GraphSpace(MODELS)
    dist = ProbabilisticGraph(space)
    good = {"structure": "single", "a_model": "Qwen3-4B", "a_controller": "cmc", "a_beta": 1.0}
    bad = dict(good, a_model="Qwen3-1.7B")
    for _ in range(5):
        dist.reinforce([(good, 0.8), (bad, 0.5)], lr=0.5)
    assert dist.probs["a_model"][MODELS.index("Qwen3-4B")] > 0.8
    assert abs(sum(dist.probs["a_model"]) - 1) < 1e-9
    assert min(dist.probs["a_model"]) >= 0.01 - 1e-12  # never rules an option out
    draws = [dist.sample(random.Random(i))["a_model"] for i in range(200)]
    assert draws.count("Qwen3-4B") > 150


def test_objective_penalises_overshooting_the_budget():
    assert objective(80.0, 1e15, 2e15) == 80.0
    assert objective(80.0, 3e15, 2e15) == pytest.approx(30.0)
    records = [{"objective": v} for v in (10, 50, 40, 79, 80)]
    assert evaluations_to_reach(records, 0.95 * 80) == 4
    assert evaluations_to_reach(records, 90) is None


@pytest.mark.parametrize("method", ["optuna", "agent"])
def test_searches_record_every_evaluation_and_resume_without_rework(tmp_path, evaluator, method):
    def search_once():
        run = RunDirectory(tmp_path / "run")
        run.path.mkdir(exist_ok=True)
        search = GraphSearch(run, evaluator, budget=3e15)
        if method == "optuna":
            return optuna_search(search, trials=6, seed=1), run
        return agent_search(search, AgentSettings(trials=6, batch=3, seed=1)), run

    first, run = search_once()
    lines = (run.path / "evaluations.jsonl").read_text().splitlines()
    assert len(first) == 6 and 0 < len(lines) <= 6
    for record in first:
        assert record["strategy"] == method
        assert 0 <= record["accuracy"] <= 100 and record["tokens"] > 0
        assert set(record["model_tokens"]) == set(MODELS)
        assert record["objective"] == objective(record["accuracy"], record["cost"], 3e15)
    again, _ = search_once()
    assert (run.path / "evaluations.jsonl").read_text().splitlines() == lines  # nothing re-run
    assert [r["label"] for r in again] == [r["label"] for r in first]


def test_llm_agent_applies_textual_updates_and_survives_garbage(tmp_path, evaluator):
    update = {
        "feedback": "the 4B model wins; prefer it alone",
        "updates": {"structure": {"single": 5, "vote": 1}, "a_model": {"Qwen3-4B": 1.0}},
    }
    replies = [f"Looking at it.\n```json\n{json.dumps(update)}\n```", "no idea", ""]
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    with RecordedChatServer(replies) as server:
        llm = LLMClient(run, {"model": "recorded", "base_url": server.base_url}, None)
        search = GraphSearch(run, evaluator, budget=3e15)
        agent_search(search, AgentSettings(trials=6, batch=2, seed=3), llm)
        assert len(server.requests) == 3
        prompt = server.requests[0]["messages"][-1]["content"]
        assert "Current probabilities" in prompt and "cost" in prompt
    log = run.records("agent.jsonl")
    assert log[0]["feedback"] == update["feedback"] and log[0]["problems"] == []
    assert [r.get("llm_update") for r in log if "llm_update" in r] == ["unusable reply"] * 2
    first_probs = log[1]["probs"]
    assert first_probs["structure"]["single"] > 0.4  # 0.2 uniform, half-way to 5/6
    assert first_probs["a_model"]["Qwen3-4B"] > 0.7


def test_frontier_helpers():
    single = [
        {"cost": 1.0, "accuracy": 50.0},
        {"cost": 2.0, "accuracy": 45.0},
        {"cost": 3.0, "accuracy": 70.0},
    ]
    assert envelope(single) == [(1.0, 50.0), (3.0, 70.0)]
    assert envelope_at(envelope(single), 2.5) == 50.0
    assert envelope_at(envelope(single), 0.5) == float("-inf")
    assert [p["cost"] for p in pareto(single)] == [1.0, 3.0]
    (gained,) = with_gains([{"cost": 2.0, "accuracy": 56.0}], single)
    assert gained["gain"] == 6.0 and gained["single_best"] == 50.0
    assert gained["gain_interval"] is None  # no outcome tables: no interval claimed


def test_gains_carry_a_paired_interval_and_public_drops_the_tables():
    rng = np.random.default_rng(0)
    base = 100.0 * (rng.random((30, 20)) < 0.5)
    better = np.where(rng.random((30, 20)) < 0.3, 100.0, base)  # same episodes, some flipped up
    single = [{"cost": 1.0, "accuracy": base.mean(), "_outcomes": {"accuracy": base}}]
    point = {"cost": 1.5, "accuracy": better.mean(), "_outcomes": {"accuracy": better}}
    (gained,) = with_gains([point], single)
    low, high = gained["gain_interval"]
    assert 0 < low < gained["gain"] < high  # paired: the gain is shown although both vary
    noise = {
        "cost": 1.5,
        "accuracy": 0.0,
        "_outcomes": {"accuracy": 100.0 * (rng.random((30, 20)) < 0.5)},
    }
    noise["accuracy"] = noise["_outcomes"]["accuracy"].mean()
    low, high = with_gains([noise], single)[0]["gain_interval"]
    assert low < 0 < high  # an unrelated coin flip is no significant difference
    written = public({"points": [gained], "_cache": 1})
    assert written == {"points": [{k: v for k, v in gained.items() if k != "_outcomes"}]}


def test_collab_cli_search_report_and_eval(tmp_path, env_dir):
    runner = CliRunner()
    run = tmp_path / "run"
    common = ["--model", "Qwen3-4B", "--model", "Qwen3-8B", "--env-dir", str(env_dir)]
    result = runner.invoke(
        app,
        ["collab", "search", "-o", str(run), "--strategy", "agent", "--trials", "4",
         "--seeds", "2", "--final-seeds", "2", "--final-graphs", "2", "--workers", "1",
         *common],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "largest gain of a searched graph" in result.output
    final = json.loads((run / "final.json").read_text())
    assert set(final["datasets"]) == {"search", "heldout"}
    assert final["datasets"]["heldout"]["dataset"] == "aime25"
    assert {p["model"] for p in final["datasets"]["search"]["single"]} == {"Qwen3-4B", "Qwen3-8B"}
    assert len(final["datasets"]["search"]["fixed"]) == 4 * 4  # 4 graphs × 4 β
    exported = load_controller(run / "best_graph.py")
    assert exported.graph.name == final["best"]["graph"]["name"]
    for point in final["datasets"]["heldout"]["searched"]:
        low, high = point["accuracy_interval"]
        assert low <= point["accuracy"] <= high and point["accuracy_se"] >= 0
        assert "_outcomes" not in point
    assert all(len(p["accuracy_interval"]) == 2 for p in final["datasets"]["search"]["single"])
    (run / "report.md").unlink()
    assert runner.invoke(app, ["report", str(run)]).exit_code == 0
    report = (run / "report.md").read_text()
    assert "Verdict" in report and "accuracy % ± se | 95% interval" in report
    assert "gain 95% interval (paired)" in report and "target on the means; 95% interval" in report

    out = tmp_path / "eval"
    args = ["collab", "eval", str(run / "best_graph.yaml"), "--seeds", "2", *common]
    result = runner.invoke(
        app, [*args, "--betas", "0.5,1", "-o", str(out), "--export", str(tmp_path / "again.py")]
    )
    assert result.exit_code == 0, result.output
    assert "± " in result.output and (tmp_path / "again.py").exists()
    head, rule, *lines = (out / "results.md").read_text().split("\n\n")[1].splitlines()
    assert head.startswith("| β | accuracy % ± se |")  # each header over its own cells
    assert {line.count("|") for line in lines} == {head.count("|")} and lines[0].startswith(
        "| 0.5 |"
    )
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["beta"] for r in rows] == ["0.5", "1.0"]
    assert (
        float(rows[0]["accuracy_low"])
        <= float(rows[0]["accuracy"])
        <= float(rows[0]["accuracy_high"])
    )
    assert json.loads((out / "run.json").read_text())["seeds"] == 2
    refused = runner.invoke(app, [*args, "-o", str(out)])
    assert refused.exit_code == 2 and "not empty" in refused.output
    store = tmp_path / "mlruns"
    result = runner.invoke(
        app, [*args, "--beta", "1", "-o", str(out), "--overwrite", "--json", "--mlflow", str(store)]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["beta"] == 1.0 and row["accuracy_se"] >= 0 and row["status"] == "ok"
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (logged,) = client.search_runs([client.get_experiment_by_name("autotts-collab").experiment_id])
    key = metric_key("β=1", row["env"], "accuracy")  # "+" is no metric character: "_"
    assert logged.data.metrics[key] == row["accuracy"]
    assert logged.data.metrics[f"{key}/low"] == row["accuracy_low"]
    for bad_beta in ("abc", "-1"):
        result = runner.invoke(app, [*args, "--betas", bad_beta, "-o", str(tmp_path / "no")])
        assert result.exit_code == 2 and "--betas" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [{id: g, role: generate, model: Qwen3-0.6B}]\n")
    result = runner.invoke(
        app, ["collab", "eval", str(bad), "--seeds", "1", "-o", str(tmp_path / "no"), *common]
    )
    assert result.exit_code == 2
    assert "unknown model 'Qwen3-0.6B'" in result.output
    assert not (tmp_path / "no").exists()  # nothing created for a refused command
