"""build-env (killed mid-run, resumed, replayed), validate, the server path, bad input."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import kill_mid_run_and_resume

from autotts.envs.replay import ReplayEnvironment
from autotts.evaluation.checker import check_controller
from autotts.live.backend import BackendError
from autotts.live.live_environment import LiveEnvironment, LiveQuestion
from autotts.live.questions import QuestionsError, load_questions
from autotts.live.server import OpenAIBackend
from autotts.live.validation import validate_live
from autotts.loading.controller_files import load_controller
from autotts.results.traces import EpisodeTrace

pytestmark = pytest.mark.live

QUESTIONS = [
    {"question": "What is 2 + 2?", "answer": "4"},
    {"question": "Compute 6 * 7.", "answer": "42"},
    {"question": "How many sides has a hexagon?", "answer": "6"},
    {"question": "What is 10 - 3?", "answer": "7"},
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build_command(model, questions, out):
    return [
        sys.executable, "-m", "autotts.cli", "build-env", "--backend", "vllm",
        "--model", str(model), "--questions", str(questions), "--out", str(out),
        "-n", "4", "--delta", "32", "--max-branch-tokens", "96", "--probe-tokens", "6",
        "--max-model-len", "1024", "--enforce-eager", "--engine-arg", "max_num_seqs=8",
    ]  # fmt: skip


def test_build_env_killed_mid_run_resumes_and_replays(tiny_model, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    out = tmp_path / "envs" / "Tiny" / "toy.json"
    command = _build_command(tiny_model, questions, out)
    records = kill_mid_run_and_resume(command, out, 4)
    for record in records:
        assert len(record["each_branch"]) == 4 and record["probe_freq"] == 32
        for probes, tokens, final in record["each_branch"]:
            assert tokens >= 32 * len(probes) and isinstance(final, str)
    for record in records:  # the confidence signals, one value per interval
        for name in ("confidence", "logprob"):
            values = record["signals"][name]
            assert [len(v) for v in values] == [len(b[0]) + 1 for b in record["each_branch"]]
        known = [v for branch in record["signals"]["confidence"] for v in branch if v is not None]
        assert known and all(v > 0 for v in known)
    meta = json.loads(out.with_name("toy.meta.json").read_text())
    assert meta["branches"] == 4 and meta["settings"]["delta"] == 32 and "vllm" in meta["versions"]

    replay = ReplayEnvironment.load("Tiny/toy", tmp_path / "envs")
    cmc = load_controller("cmc")
    results = [replay.run_episode(cmc, cmc.params(0.0), q, s) for q in range(4) for s in range(5)]
    assert [r.error for r in results] == [None] * 20
    # DeepConf runs on the built store and passes the checker there
    assert replay.signal_names == {"confidence", "logprob"}
    report = check_controller("deepconf", "Tiny/toy", env_dir=tmp_path / "envs", seeds=2)
    assert report.ok, report


def test_validate_live_next_to_its_replay_prediction(vllm_backend, settings, env_dir):
    questions = load_questions("replay:Qwen3-8B/aime24", env_dir, limit=2)
    cmc = load_controller("cmc")
    report = validate_live(
        vllm_backend, questions, cmc, cmc.params(0.0), settings, seeds=1, max_branches=4,
        replay_env="Qwen3-8B/aime24", env_dir=env_dir,
    )  # fmt: skip
    live, replay = report["live"], report["replay"]
    assert live["episodes"] == 2 and live["errors"] == 0 and live["tokens"] > 0
    assert live["probe_tokens"] > 0  # probe decodes apart from the branch tokens replay counts
    assert live["tokens_per_s"] > 0 and live["seconds_per_episode"] > 0
    assert replay["matched"] == 2 and replay["episodes"] == 200
    assert len(report["traces"]) == 2 and report["traces"][0]["steps"][0]["action"] == "branch"
    for trace in report["traces"]:  # the replay's trace format
        EpisodeTrace.model_validate(trace)


def test_openai_compatible_server_path(tiny_model, settings, tmp_path, vllm_backend):
    port = _free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
            str(tiny_model), "--host", "127.0.0.1", "--port", str(port), "--enforce-eager",
            "--max-model-len", "1024", "--enable-prefix-caching",
        ],
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
        stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        backend = None
        deadline = time.monotonic() + 300
        while backend is None:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "server not ready in 300 s"
            try:
                backend = OpenAIBackend(f"http://127.0.0.1:{port}/v1")
            except BackendError:
                time.sleep(1)
        questions = [LiveQuestion("What is 2 + 2?", "4")]
        env = LiveEnvironment(backend, questions, settings, max_branches=16)
        assert not isinstance(env.prompt(0), str)  # token ids through /tokenize
        cmc = load_controller("cmc")
        result = env.run_episode(cmc, cmc.params(0.2), 0, 1)
        assert result.error is None and result.tokens == backend.stats.generated_tokens
        from autotts.live.backend import GenerationRequest

        (g,) = backend.generate([GenerationRequest(env.prompt(0), 8, {"temperature": 0}, 0, 20)])
        assert len(g.confidences) == len(g.logprobs) == g.n_tokens == 8  # per token, via HTTP
        assert all(c > 0 for c in g.confidences) and all(v <= 0 for v in g.logprobs)
        # sampling parity: both paths start from the model's generation config, and the same
        # seed with the defaults samples the same tokens in process and through the server
        qwen3 = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0}
        assert backend.sampling_defaults() == vllm_backend.sampling_defaults() == qwen3
        message = settings.user_message(questions[0].question)
        assert env.prompt(0) == vllm_backend.prompt(message, settings.system, settings.thinking)
        defaults = [GenerationRequest(env.prompt(0), 24, {}, seed) for seed in (1, 2, 3)]
        served, local = backend.generate(defaults), vllm_backend.generate(defaults)
        assert [g.token_ids for g in served] == [g.token_ids for g in local]
        narrow = vllm_backend.generate([GenerationRequest(env.prompt(0), 24, {"top_k": 1}, 1)])
        assert narrow[0].token_ids != local[0].token_ids  # top_k is applied, not ignored
        deepconf = load_controller("deepconf")  # the server's log-probabilities reach it
        run = deepconf.params(0.0, warmup=2, budget=4, window_tokens=32)
        assert env.run_episode(deepconf, run, 0, 1).error is None
        assert backend.stats.requests > backend.stats.calls  # branches went out together
        # requests nobody wants any more: their connections close, and the server aborts
        # them (greedy, so the tiny model would run to the 800-token limit of each)
        made = server_metric(port, "vllm:generation_tokens_total")
        left = time.monotonic() + 1.0
        unwanted = [
            GenerationRequest(env.prompt(0), 800, {"temperature": 0}, seed,
                              cancelled=lambda: time.monotonic() > left)
            for seed in range(16)
        ]  # fmt: skip
        cut = backend.generate(unwanted)
        assert {g.n_tokens for g in cut} == {0} and backend.stats.aborted == 16
        deadline = time.monotonic() + 30
        while server_metric(port, "vllm:num_requests_running") > 0:
            assert time.monotonic() < deadline, "the server did not abort the requests"
            time.sleep(0.2)
        assert server_metric(port, "vllm:generation_tokens_total") - made < 16 * 800
        backend.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


def server_metric(port: int, name: str, label: str = "") -> float:
    """The sum of a vLLM server's Prometheus samples ``name`` whose labels contain ``label``."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and label in line and not line.startswith("#")
    )


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(BackendError, match="cannot reach the completions server"):
        OpenAIBackend(f"http://127.0.0.1:{_free_port()}/v1")


def test_cli_bad_input(tmp_path):
    from typer.testing import CliRunner

    from autotts.cli import app

    runner = CliRunner()

    def said(result):
        return " ".join(result.output.split())

    missing = runner.invoke(app, ["validate", "cmc", "--questions", str(tmp_path / "none.jsonl")])
    assert missing.exit_code == 2 and "question file not found" in said(missing)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n')
    result = runner.invoke(
        app, ["build-env", "--questions", str(bad), "--out", str(tmp_path / "M" / "d.json")]
    )
    assert result.exit_code == 2 and "line 1: missing field 'answer'" in said(result)
    port = _free_port()
    good = tmp_path / "good.jsonl"
    good.write_text('{"question": "x", "answer": "1"}\n')
    result = runner.invoke(
        app, ["validate", "cmc", "--questions", str(good), "--backend", "openai",
              "--base-url", f"http://127.0.0.1:{port}/v1"],
    )  # fmt: skip
    assert result.exit_code == 1 and "cannot reach" in said(result)
    result = runner.invoke(app, ["validate", "cmc", "--questions", str(good), "--model", "m",
                                 "--engine-arg", "fp8"])  # fmt: skip
    assert result.exit_code == 1 and "--engine-arg 'fp8': expected KEY=VALUE" in said(result)
    result = runner.invoke(
        app, ["validate", "cmc", "--questions", str(good), "--backend", "openai",
              "--base-url", f"http://127.0.0.1:{port}/v1", "--engine-arg", "max_num_seqs=8"],
    )  # fmt: skip
    assert result.exit_code == 1 and "configures the in-process engine" in said(result)


def test_question_files_name_the_problem(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "a", "answer": 3}\nnot json\n')
    with pytest.raises(QuestionsError, match="line 2: not valid JSON"):
        load_questions(str(path))
    path.write_text('{"problem": "a", "gold_answer": 3}\n')
    assert load_questions(str(path)) == [LiveQuestion("a", "3")]
    with pytest.raises(QuestionsError, match="Unknown/none"):
        load_questions("replay:Unknown/none", Path(tmp_path))
