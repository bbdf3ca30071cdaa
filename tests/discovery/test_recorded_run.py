"""Real traffic: the recorded LLM discovery run with a frontier model
(``../shared/recordings/llm-discovery-1/``, read from there) replayed through the
protocol-level double drives the loop to the same eight candidates with the same search-set
results, now ranked by the stated objective."""

import json
import subprocess
import sys

import pytest
from llm_double import RecordedChatServer

from autotts.discovery.objective import ranking_key
from autotts.results.run_directory import RunDirectory

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recording(env_dir):
    path = env_dir.parent / "recordings" / "llm-discovery-1"
    if not (path / "messages.jsonl").is_file():
        pytest.fail(f"the recorded run is not at {path}; set up ../shared first")
    return path


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_recorded_run_replays_to_the_same_candidates(tmp_path, env_dir, recording):
    exchanges = _lines(recording / "messages.jsonl")
    config = json.loads((recording / "config.json").read_text())
    recorded = {
        r["round"]: r for r in _lines(recording / "history.jsonl") if r.get("event") == "round"
    }
    run_path = tmp_path / "run"
    with RecordedChatServer([e["reply"] for e in exchanges]) as server:
        done = subprocess.run(
            [
                sys.executable, "-m", "autotts.cli", "discover", "-o", str(run_path),
                "--trials", str(config["search"]["trials"]),
                "--seeds", str(config["search"]["seeds"]),
                "--final-seeds", "2",  # the judgement is not what is compared here
                "--llm-model", config["llm"]["model"], "--llm-base-url", server.base_url,
                "--llm-api-key", "recorded", "--env-dir", str(env_dir),
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip
        requests = server.requests
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(requests) == len(exchanges)  # every recorded reply was asked for, no more
    run = RunDirectory.open(run_path)
    rounds = [r for r in run.rounds() if r.get("stage") == "llm"]
    assert len(rounds) == len(recorded) == 8
    for mine in rounds:
        theirs = recorded[mine["round"]]
        number = int(mine["candidate"])
        source = run.candidate_source(number)
        assert source == (recording / "candidates" / f"{number:04d}" / "controller.py").read_text()
        assert mine["status"] == theirs["status"] == "ok"
        flat = [x for point in mine["curve"] for x in point]
        assert flat == pytest.approx([x for point in theirs["curve"] for x in point], abs=1e-9)
    # the prompt states the objective, and the judged candidate is the best by it
    first = requests[0]["messages"][-1]["content"]
    assert "# Objective" in first and "margin over CMC at equal tokens" in first
    assert "Round 1 of 8 (its candidate will be 0000)" in first and "Δ = 500 tokens" in first
    assert "# Quick tests" in first and "at most 5 β values" in first
    test_reply = requests[1]["messages"][-1]["content"]
    assert "vs CMC at equal tokens" in test_reply and "vs SC@64" in test_reply
    lessons = [r["text"] for r in run.records() if r.get("event") == "lesson"]
    assert lessons[0].startswith("round 1 (candidate 0000): ")
    best = run.stage_done("best")
    assert best["candidate"] == max(rounds, key=ranking_key)["candidate"]
    assert all(r["objective"] for r in rounds)
