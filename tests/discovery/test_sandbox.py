"""Hostile candidates: each is rejected with a recorded reason, and the loop goes on."""

from pathlib import Path

import pytest

from autotts.discovery.candidates import evaluate_candidate
from autotts.envs.replay import ReplayEnvironment
from autotts.envs.stores import load_environment_records
from autotts.sandbox import SandboxLimits, run_sandboxed, static_problems

CANDIDATES = Path(__file__).parents[1] / "fixtures" / "candidates"
ROOT = Path(__file__).parents[2]
LIMITS = SandboxLimits(memory_mb=1024, cpu_s=60, step_cpu_s=1.0, idle_s=10)


@pytest.fixture(scope="module")
def small_env(env_dir):
    records = load_environment_records("Qwen3-8B/aime24", env_dir)[:3]
    return {"Qwen3-8B/aime24": ReplayEnvironment("Qwen3-8B/aime24", records)}


def judge(name_or_source: str, envs, **kwargs):
    is_name = "\n" not in name_or_source
    source = (CANDIDATES / f"{name_or_source}.py").read_text() if is_name else name_or_source
    return evaluate_candidate(source, envs, [0.0, 1.0], 2, limits=LIMITS, **kwargs)


def test_a_good_candidate_is_scored_in_the_parent(small_env):
    source = (ROOT / "controllers" / "baselines" / "cmc.py").read_text()
    result = judge(source, small_env)
    assert result.ok, result.reason
    assert [p["beta"] for p in result.curve] == [0.0, 1.0]
    assert result.curve[0]["tokens"] < result.curve[1]["tokens"]
    # traces come back with gold filled in by the parent, never by the sandbox
    assert result.traces and all("gold" in t and t["steps"] for t in result.traces)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("syntax_error", "syntax error"),
        ("imports_socket", "import of 'socket' is not allowed"),
        ("spawns_process", "use of '__import__' is not allowed"),
        ("reads_store", "use of 'open' is not allowed"),
        ("frame_walk", "attribute '__traceback__' is not allowed"),
        ("runtime_escape", "import of 'gc' is not allowed"),
    ],
)
def test_static_layer_rejects(name, reason, small_env):
    result = judge(name, small_env)
    assert not result.ok
    assert reason in result.reason


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("import socket\nsocket.socket()", "socket"),
        ("import gc\ngc.get_objects()", "gc"),
        ("open('/etc/hostname').read()", "open"),
        ("import os\nos.system('true')", "os.system"),
        ("import subprocess\nsubprocess.run(['true'])", "subprocess"),
        ("import sys\nsys._getframe(0)", "sys._getframe"),
    ],
)
def test_runtime_layer_blocks_what_static_checks_would(source, reason, small_env):
    """With the static layer off, the audit hook in the worker still refuses."""
    module = (
        "from autotts import Branch, Controller\n"
        + source
        + "\n"
        + (
            "class C(Controller):\n    name = 'c'\n    @staticmethod\n    def schedule(beta):\n"
            "        return {}\n    def run(self, state):\n        yield Branch(1)\n        return '1'\n"
        )
    )
    outcome = run_sandboxed(
        module,
        small_env,
        [(0.5, {})],
        1,
        limits=LIMITS,
        static_check=False,
    )
    assert not outcome.ok
    assert "not allowed" in outcome.reason and reason in outcome.reason


def test_infinite_loop_hits_a_limit(small_env):
    result = judge("infinite_loop", small_env)
    assert not result.ok
    assert "time limit" in result.reason


def test_memory_bomb_hits_the_memory_limit(small_env):
    result = judge("memory_bomb", small_env)
    assert not result.ok
    assert "MemoryError" in result.reason or "memory limit" in result.reason


def test_wrong_interface(small_env):
    wrong = judge("wrong_interface", small_env)
    assert not wrong.ok and "defines no Controller subclasses" in wrong.reason


def test_hash_order_is_deterministic_by_construction(small_env):
    """String hashes are the same in every worker (a fixed hash secret), so a candidate that
    depends on them is evaluated the same way every time."""
    first, second = judge("hash_order", small_env), judge("hash_order", small_env)
    assert first.ok and second.ok, (first.reason, second.reason)
    assert first.curve == second.curve


def test_beta_contract(small_env):
    source = (
        Path(__file__).parents[1] / "fixtures" / "controllers" / "not_monotone.py"
    ).read_text()
    result = judge(source, small_env)
    assert not result.ok and "cost must not fall" in result.reason
    too_wide = source.replace("max(1, round(16 - 15 * beta))", "100")
    result = judge(too_wide, small_env)
    assert not result.ok and "cannot open 100 more branches" in result.reason


def test_the_sandbox_payload_holds_no_gold(small_env):
    """What travels to the worker is ReplayQuestion data only: no gold field exists on it, and
    an environment built from it cannot score."""
    from dataclasses import fields

    from autotts.envs.replay import ReplayQuestion

    assert {f.name for f in fields(ReplayQuestion)} == {
        "text",
        "delta",
        "probes",
        "tokens",
        "finals",
        "signals",  # per-interval confidence, revealed like probes; never the gold answer
        "width_only",  # a flag: the store has no probe answers
    }
    blind = ReplayEnvironment.without_gold("x", small_env["Qwen3-8B/aime24"].questions)
    with pytest.raises(IndexError):
        blind.gold(0)


def test_static_problems_lists_each_issue():
    problems = static_problems("import os\nx = eval('1')\ny = state._secret\n'{0.x}'.format(1)\n")
    assert len(problems) == 4


@pytest.mark.parametrize("nested", ["x = a" + "[0]" * 100_000, "x = " + "-" * 100_000 + "1"])
def test_source_too_deep_to_parse_is_a_clean_rejection(nested, small_env, tmp_path):
    """The parser's own RecursionError or MemoryError on deeply nested source is a syntax
    error on every path that parses untrusted code in the parent, not an escaped exception."""
    from autotts.loading.controller_files import ControllerLoadError
    from autotts.loading.run_configs import RunConfig, refuse_unloadable

    assert "too deeply nested" in static_problems(nested)[0]
    result = evaluate_candidate(nested, small_env, [0.5], seeds=1)
    assert not result.ok and "too deeply nested" in result.reason
    path = tmp_path / "deep.py"
    path.write_text(nested)
    with pytest.raises(ControllerLoadError, match="too deeply nested"):
        refuse_unloadable([RunConfig(str(path), beta=0.5)], sandbox=True)


def test_the_parent_keeps_each_distinct_answer_once_and_bounds_them():
    from autotts.sandbox.limits import Rejected
    from autotts.sandbox.serving import TraceBudget

    budget = TraceBudget(text_bytes=20_000)
    first = budget.text("".join(["4", "2"]))
    assert budget.text("".join(["4", "2"])) is first and budget.text(None) is None
    with pytest.raises(Rejected, match="MB of distinct text"):
        for n in range(1000):
            budget.text(f"answer {n} " + "\U0001f600" * 100)
