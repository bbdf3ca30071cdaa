"""The LLM path end to end through the real openai client and LangGraph, against a
protocol-level test double (a local OpenAI-compatible server replaying recorded replies)."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import SMALL_DISCOVERY
from llm_double import RecordedChatServer

from autotts.discovery.export import export_controller
from autotts.discovery.replies import extract_code, select_failure_traces
from autotts.discovery.run_report import render_report
from autotts.evaluation.checker import check_controller
from autotts.results.run_directory import RunDirectory

REPLIES = json.loads((Path(__file__).parents[1] / "fixtures" / "llm_replies.json").read_text())
SMALL = [*SMALL_DISCOVERY, "--workers", "2"]


def discover(*args, env_dir):
    cmd = [sys.executable, "-m", "autotts.cli", "discover", *args, *SMALL]
    return subprocess.run(cmd + ["--env-dir", str(env_dir)], capture_output=True, text=True)


def test_llm_rounds_survive_garbage_and_keep_the_good(tmp_path, env_dir):
    run_path = tmp_path / "run"
    with RecordedChatServer(REPLIES["replies"]) as server:
        done = discover(
            "-o",
            str(run_path),
            "--trials",
            "4",
            "--llm-model",
            "recorded",
            "--llm-base-url",
            server.base_url,
            "--llm-api-key",
            "test-key",
            "--price-in",
            "1.0",
            "--price-out",
            "2.0",
            env_dir=env_dir,
        )
        requests = server.requests
    assert done.returncode == 0, done.stderr[-3000:]
    run = RunDirectory.open(run_path)
    rounds = run.rounds()
    assert [r["status"] for r in rounds] == ["ok", "failed", "rejected", "ok"]
    assert "the reply was empty" in rounds[1]["reason"]
    assert "cost must not fall" in rounds[2]["reason"]
    assert len(requests) == len(REPLIES["replies"])
    # retries carry the error back; the quick test's numbers reach the model
    round_one = [r["messages"][-1]["content"] for r in requests[:4]]
    assert "no ```python code block" in round_one[1]
    assert "not closed" in round_one[2]
    assert "Quick sandboxed evaluation" in round_one[3] and "β=0.3" in round_one[3]
    assert "vs CMC at equal tokens" in round_one[3] and "vs SC@64" in round_one[3]
    assert "import of 'socket' is not allowed" in requests[5]["messages"][-1]["content"]
    # later rounds read the history: best candidate's code and curve, lessons, traces
    later = requests[7]["messages"][1]["content"]
    assert "candidate 0000" in later and "class ProbeConsensus" in later
    assert "(candidate 0001): failed: the reply was empty" in later and "SC@64" in later
    assert "Execution traces" in later
    # every exchange logged, usage priced
    assert len(run.records("messages.jsonl")) == len(requests)
    usage = [r for r in run.records() if r.get("event") == "llm_usage"]
    assert len(usage) == len(requests) and all(u["usd"] > 0 for u in usage)
    assert (run.candidate_dir(0) / "controller.py").exists()
    edited = run.candidate_source(3)  # built from edit blocks
    assert "4 + round(12 * beta)" in edited and 'name = "wide-consensus"' in edited
    assert (run.candidate_dir(0) / "traces.jsonl.gz").exists()
    best = run.stage_done("best")
    assert best["candidate"] in ("0000", "0003")
    # the chosen candidate is judged on search and held-out environments, and reported
    heldout = json.loads((run_path / "heldout.json").read_text())
    assert heldout["envs"] == ["Qwen3-8B/aime25"] and len(heldout["winner"]) == 11
    assert "verdict" in heldout and "held-out" in done.stdout
    report = render_report(run)["markdown"].read_text()
    assert "LLM usage" in report and "class ProbeConsensus" in report
    out = export_controller(run_path, tmp_path / "probe_consensus.py")
    first, second = out.read_text().splitlines()[:2]
    assert first.startswith("# autotts: untrusted (written by an LLM in ")
    assert second.startswith("# Discovered by autotts (llm path)")
    checked = check_controller(str(out), "Qwen3-8B/aime24", env_dir=env_dir, questions=2, seeds=1)
    assert checked.ok and checked.items[0].detail == "loads in the sandbox"


def test_unreachable_endpoint_is_recorded_and_the_loop_ends_cleanly(tmp_path, env_dir):
    done = discover(
        "-o",
        str(tmp_path / "run"),
        "--trials",
        "1",
        "--llm-model",
        "nobody",
        "--llm-base-url",
        "http://127.0.0.1:9/v1",
        env_dir=env_dir,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (only,) = RunDirectory.open(tmp_path / "run").rounds()
    assert only["status"] == "failed" and "LLM request failed" in only["reason"]


def test_extract_code_explains_garbage():
    assert extract_code("")[1] == "the reply was empty"
    assert "not closed" in extract_code("```python\nx = 1\n")[1]
    assert "no autotts.Controller" in extract_code("```python\nx = 1\n```")[1]
    assert extract_code("```python\nfrom autotts import Controller\n```")[0] is not None
    base = "from autotts import Controller\nX = 1\n"
    edit = "<<<<<<< SEARCH\nX = 1\n=======\nX = 2\n>>>>>>> REPLACE"
    assert extract_code(edit, base)[0] == "from autotts import Controller\nX = 2\n"
    assert "no accepted candidate" in extract_code(edit)[1]
    assert "not found" in extract_code(edit.replace("X = 1", "Y = 1", 1), base)[1]


def test_failure_traces_prefer_wrong_stops_within_budget():
    def trace(correct, gold_seen, branches, tokens):
        revealed = ["5", "7"] if gold_seen else ["5"]
        return {
            "env": "e",
            "question": 1,
            "seed": 0,
            "setting": "β=0.5",
            "answer": "5",
            "gold": "7",
            "correct": correct,
            "branches": branches,
            "tokens": tokens,
            "reason": "r",
            "steps": [
                {
                    "action": "branch",
                    "ids": [0, 1],
                    "revealed": revealed,
                    "finished": [],
                    "tokens": tokens,
                }
            ],
        }

    traces = [trace(True, True, 40, 900), trace(False, False, 4, 10), trace(False, True, 3, 50)]
    text = select_failure_traces(traces, 10_000)
    assert text.index("[wrong stop]") < text.index("[wasted branches]")
    assert text.count("[wrong stop]") == 1  # the wrong answer that never saw gold is skipped
    assert len(select_failure_traces(traces * 50, 600)) <= 600


def test_code_written_while_thinking_is_never_taken():
    from autotts.discovery.replies import strip_reasoning

    good = REPLIES["replies"][3]  # a reply with a valid controller
    code = good[good.index("```python") :]
    assert extract_code(strip_reasoning(f"<think>draft:\n{code}\n</think>Done."))[1] == (
        "the reply has no ```python code block (nor SEARCH/REPLACE edits)"
    )
    assert strip_reasoning(f"<think>cut off while thinking {code}") == ""
    assert strip_reasoning(f"draft {code}</think>final") == "final"  # template opened it
    assert extract_code(strip_reasoning(f"<think>hm</think>{good}"))[0] is not None


def test_the_client_caps_replies_and_strips_thinking(tmp_path):
    from autotts.discovery.llm import LLMClient

    run = RunDirectory.create(tmp_path / "run", {"strategy": "llm"})
    thinking = "<think>\n```python\nclass Sneaky: pass\n```\n</think>\nNo code this time."
    with RecordedChatServer([thinking]) as server:
        client = LLMClient(run, {"model": "m", "base_url": server.base_url, "max_tokens": 512}, "k")
        assert client.chat(0, [{"role": "user", "content": "hi"}]) == "No code this time."
        assert server.requests[0]["max_tokens"] == 512


def test_the_llm_budget_stops_the_run_cleanly(tmp_path, env_dir):
    run_path = tmp_path / "run"
    with RecordedChatServer(REPLIES["replies"][3:4] * 4) as server:
        done = discover(
            "-o", str(run_path), "--trials", "3", "--llm-model", "recorded",
            "--llm-base-url", server.base_url, "--max-llm-tokens", "10", env_dir=env_dir,
        )  # fmt: skip
        requests = len(server.requests)
    assert done.returncode == 0, done.stderr[-3000:]
    run = RunDirectory.open(run_path)
    assert len(run.rounds()) == 1 and requests == 1  # the first round spent the budget
    (stop,) = [r for r in run.records() if r.get("event") == "budget_stop"]
    assert "of 10 tokens" in stop["reason"]
    assert "LLM budget is spent" in done.stdout + done.stderr


def test_repeated_endpoint_failures_end_the_run_with_an_error(tmp_path, env_dir):
    done = discover(
        "-o", str(tmp_path / "run"), "--trials", "5", "--llm-model", "nobody",
        "--llm-base-url", "http://127.0.0.1:9/v1", "--llm-retries", "0", env_dir=env_dir,
    )  # fmt: skip
    assert done.returncode != 0
    assert "failed 3 rounds in a row" in " ".join(done.stderr.split() + done.stdout.split())
    assert len(RunDirectory.open(tmp_path / "run").rounds()) == 3


def test_parallel_proposals_are_requested_and_recorded_at_once(tmp_path, env_dir):
    run_path = tmp_path / "run"
    good = REPLIES["replies"][3]  # a whole valid controller
    with RecordedChatServer([good, good], together=2) as server:
        done = discover(
            "-o", str(run_path), "--trials", "2", "--parallel", "2", "--llm-model", "recorded",
            "--llm-base-url", server.base_url, "--llm-retries", "0", env_dir=env_dir,
        )  # fmt: skip
        prompts = [r["messages"][1]["content"] for r in server.requests]
    assert done.returncode == 0, done.stderr[-3000:]
    rounds = RunDirectory.open(run_path).rounds()
    assert sorted(r["round"] for r in rounds) == [0, 1] and {r["status"] for r in rounds} == {"ok"}
    assert len(prompts) == 2  # both were in flight together (else the double refuses)


def test_structured_replies_and_the_fallback_to_text(tmp_path):
    from autotts.discovery.llm import LLMClient

    good = REPLIES["replies"][3]
    code = good[good.index("```python") + len("```python") : good.rindex("```")]
    as_json = json.dumps({"idea": "confident pool", "action": "test", "code": code, "edits": ""})
    run = RunDirectory.create(tmp_path / "run", {"strategy": "llm"})
    with RecordedChatServer([as_json]) as server:
        client = LLMClient(run, {"model": "m", "base_url": server.base_url}, "k")
        text = client.chat(0, [{"role": "user", "content": "hi"}])
        assert server.requests[0]["response_format"]["type"] == "json_schema"
    source, error = extract_code(text)
    assert error is None and source.strip() == code.strip() and "ACTION: test" in text
    with RecordedChatServer([good, good], structured=False) as server:
        client = LLMClient(run, {"model": "m", "base_url": server.base_url, "max_retries": 0}, "k")
        assert client.chat(0, [{"role": "user", "content": "hi"}]) == good.strip()
        assert client.chat(1, [{"role": "user", "content": "again"}]) == good.strip()
        kinds = ["response_format" in r for r in server.requests]
    assert kinds == [True, False, False]  # refused once, text from then on
    assert [r["event"] for r in run.records() if r.get("event") == "llm_structured_off"]
