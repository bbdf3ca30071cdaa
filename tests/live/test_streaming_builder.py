"""The streaming store builder on the real CPU vLLM engine (tiny model): greedy stores equal
the stepwise builder's, killed mid-run and resumed nothing is lost, sampled stores are valid
and replay, and the engine's counters show the probes reading the branches' cached prefix."""

import json
import subprocess
import sys

import pytest
from conftest import kill_mid_run_and_resume

from autotts.envs.replay import ReplayEnvironment
from autotts.envs.stores import load_records
from autotts.live.builder import build_environment
from autotts.live.live_environment import LiveQuestion
from autotts.live.settings import LiveSettings
from autotts.loading.controller_files import load_controller

pytestmark = pytest.mark.live

QUESTIONS = [LiveQuestion("What is 2 + 2?", "4"), LiveQuestion("Compute 6 * 7.", "42")]
GREEDY = LiveSettings(delta=32, max_branch_tokens=96, probe_tokens=6, temperature=0.0)


@pytest.fixture(scope="module")
def streaming(tiny_model):
    from autotts.live.streaming import StreamingBuilder

    builder = StreamingBuilder(str(tiny_model), max_model_len=1024, enforce_eager=True, seed=0)
    yield builder
    builder.close()


def test_greedy_streaming_store_equals_the_stepwise_one(streaming, vllm_backend, tmp_path):
    stepwise = build_environment(
        vllm_backend, QUESTIONS, tmp_path / "a" / "T" / "s.json", 4, GREEDY
    )
    streamed = streaming.build(QUESTIONS, tmp_path / "b" / "T" / "s.json", 4, GREEDY)
    old, new = json.loads(stepwise.read_text()), json.loads(streamed.read_text())
    for a, b in zip(old, new, strict=True):
        assert a["each_branch"] == b["each_branch"]  # probes, token counts, final answers
        for name in ("confidence", "logprob"):
            for x, y in zip(a["signals"][name], b["signals"][name], strict=True):
                assert y == pytest.approx(x, rel=1e-3, abs=1e-3)
        # every branch reaches the 96-token limit: probes after 32 and 64 tokens, not at 96
        assert all(len(p) == 2 and t == 96 for p, t, _ in b["each_branch"])
    meta = json.loads(streamed.with_name("s.meta.json").read_text())
    assert meta["builder"] == "streaming" and meta["branches"] == 4


def test_sampled_streaming_store_is_valid_replays_and_probes_hit_the_cache(streaming, tmp_path):
    settings = LiveSettings(delta=32, max_branch_tokens=160, probe_tokens=6, temperature=1.0)
    before = streaming.stats.cached_prompt_tokens
    path = streaming.build(QUESTIONS, tmp_path / "T" / "s.json", 8, settings, seed=3)
    records = load_records(path)  # validates probes, signals, lengths
    for record in records:
        assert len(record.each_branch) == 8 and record.signals is not None
        for probes, tokens, _ in record.each_branch:
            assert tokens > 32 * len(probes) >= tokens - 32 - 1  # probes at every boundary passed
    # probes are forked from the running branches: their prompts come from the prefix cache
    assert streaming.stats.cached_prompt_tokens > before
    replay = ReplayEnvironment("T/s", records)
    cmc = load_controller("cmc")
    assert all(replay.run_episode(cmc, cmc.params(0.0), q, s).error is None
               for q in range(2) for s in range(3))  # fmt: skip


def test_streaming_build_killed_mid_run_resumes(tiny_model, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        "".join(
            json.dumps({"question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
            for i in range(6)
        )  # fmt: skip
    )
    out = tmp_path / "envs" / "Tiny" / "toy.json"
    partial = out.with_name("toy.partial")
    command = [
        sys.executable, "-m", "autotts.cli", "build-env", "--streaming", "--backend", "vllm",
        "--model", str(tiny_model), "--questions", str(questions), "--out", str(out),
        "-n", "4", "--delta", "32", "--max-branch-tokens", "96", "--probe-tokens", "6",
        "--max-model-len", "1024", "--enforce-eager", "--questions-in-flight", "2",
    ]  # fmt: skip
    kill_mid_run_and_resume(command, out, 6)
    # a stepwise build may not resume a streaming one
    partial.mkdir()
    (partial / "build.json").write_text(json.dumps({"builder": "stepwise"}))
    clash = subprocess.run([c for c in command if c != "--streaming"], capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert clash.returncode != 0 and "partial build with different" in " ".join(
        (clash.stdout + clash.stderr).split()
    )
