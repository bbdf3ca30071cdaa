"""What the LLM proposer is told: the search environments' measured facts, and trace lines
that say how much they leave out."""

from autotts.discovery.facts import environment_facts
from autotts.discovery.replies import render_trace
from autotts.envs.replay import ReplayEnvironment


def test_environment_facts_are_measured_on_the_store(env_dir):
    env = ReplayEnvironment.load("Qwen3-8B/aime24", env_dir)
    line = environment_facts({"Qwen3-8B/aime24": env})
    assert line.startswith("- Qwen3-8B/aime24: Δ = 500 tokens; 30 questions × 128 branches;")
    assert 'probe answers are "ERR"' in line and "a probe costs 0 tokens" in line


def test_trace_lines_say_what_they_leave_out():
    step = {"action": "Continue", "ids": list(range(20)), "revealed": ["7"] * 20, "tokens": 9000}
    trace = {"env": "e", "question": 3, "seed": 0, "setting": "β=1", "answer": "7",
             "gold": "8", "branches": 20, "tokens": 9000, "reason": "", "steps": [step]}  # fmt: skip
    line = render_trace(trace, "wrong").splitlines()[1]
    assert "15,… +4 more]" in line and line.count("… +4 more") == 2
