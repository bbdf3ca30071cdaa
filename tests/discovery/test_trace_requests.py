"""Traces on request: an earlier candidate's episodes that CMC at equal tokens got right and
it got wrong, on the same questions and seeds, within a budget that says what it leaves out."""

from pathlib import Path

from autotts.discovery.optuna_search import SearchSettings
from autotts.discovery.proposer import Proposer
from autotts.discovery.trace_requests import traces_text, wants_traces
from autotts.envs.replay import ReplayEnvironment
from autotts.results.run_directory import RunDirectory

SC = Path(__file__).parents[2] / "controllers" / "baselines" / "sc.py"
ENV = "Qwen3-0.6B/aime24"


def test_traces_show_the_episodes_an_earlier_candidate_lost_to_cmc(tmp_path, env_dir):
    settings = SearchSettings([ENV], seeds=2, trials=1, env_dir=str(env_dir))
    run = RunDirectory.create(tmp_path / "run", {"strategy": "llm"})
    run.write_candidate(0, source=SC.read_text(), result=None, traces=[])
    proposer = Proposer(run, settings, {ENV: ReplayEnvironment.load(ENV, env_dir)})
    reply = "I want to see its losses.\nTRACES: candidate=0000 env=Qwen3-0.6B/aime24 beta=0 seeds=3"
    assert wants_traces(reply)
    text = traces_text(proposer, reply)
    head = text.splitlines()[0]
    assert head.startswith(f"traces of candidate 0000 on {ENV} at β=0, 3 seeds: ")
    losses = int(head.split("was right on ")[1].split()[0])
    assert (
        losses > 0
        and text.count("[lost to CMC]")
        + (int(text.split("… ")[1].split()[0]) if "more such episodes left out" in text else 0)
        == losses
    )  # every loss is shown or counted
    assert len(text) < 7000
    wrong = traces_text(proposer, "TRACES: candidate=0042 beta=0.5")
    assert wrong.startswith("traces: no such request") and "environments: " + ENV in wrong


def test_a_chat_model_gets_traces_when_it_asks(tmp_path, env_dir):
    """Through the real loop: a reply with a TRACES line gets the traces back (counted as a
    test), and the round goes on to the model's next reply."""
    import subprocess
    import sys

    from conftest import SMALL_DISCOVERY
    from llm_double import RecordedChatServer

    first = f"ACTION: submit\n```python\n{SC.read_text()}\n```"
    ask = "Where does 0000 lose?\nACTION: traces\nTRACES: candidate=0000 beta=0 seeds=2"
    with RecordedChatServer([first, ask, first]) as server:
        done = subprocess.run(
            [sys.executable, "-m", "autotts.cli", "discover", "-o", str(tmp_path / "run"),
             "--trials", "2", "--llm-model", "recorded", "--llm-base-url", server.base_url,
             "--llm-api-key", "k", *SMALL_DISCOVERY, "--env-dir", str(env_dir)],
            capture_output=True, text=True,
        )  # fmt: skip
        requests = server.requests
    assert done.returncode == 0, done.stderr[-3000:]
    answer = requests[2]["messages"][-1]["content"]
    assert answer.startswith("traces of candidate 0000 on Qwen3-8B/aime24 at β=0, 2 seeds: ")
    assert "(1 tests or trace requests left this round)" in answer
    rounds = RunDirectory.open(tmp_path / "run").rounds()
    assert [r["status"] for r in rounds if r.get("stage") == "llm"] == ["ok", "ok"]
