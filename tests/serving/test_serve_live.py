"""``autotts serve`` in front of a real vLLM engine (the tiny model, CPU), with the official
``openai`` client: chat, completions and streaming; concurrent clients get the answers they
would get alone; a client that leaves stops its episode's generations."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from autotts.live.backend import GenerationRequest
from autotts.live.settings import LiveSettings
from autotts.loading.controller_files import mark_untrusted, resolve_controller_path
from autotts.sandbox import isolation_problems
from autotts.serving import app, serving

pytestmark = pytest.mark.live

SAMPLED = LiveSettings(delta=32, max_branch_tokens=96, probe_tokens=4, temperature=1.0)


@pytest.fixture(scope="module")
def client(vllm_backend):
    application = app(["sc", "cmc"], vllm_backend, SAMPLED, max_in_flight=16, max_queue=16)
    with serving(application) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0), url


def test_chat_completions_and_streaming_on_the_engine(client, vllm_backend):
    client, url = client
    before = vllm_backend.stats.generated_tokens
    reply = client.chat.completions.create(
        model="cmc@beta=0", messages=[{"role": "user", "content": "What is 2 + 2?"}], seed=3
    )
    details = reply.model_extra["autotts"]
    assert details["branches"] >= 2 and details["controller"] == "cmc@beta=0"
    # usage: every token the engine generated for this request, branches and probes
    assert reply.usage.completion_tokens == vllm_backend.stats.generated_tokens - before > 0
    assert (
        reply.usage.completion_tokens == sum(details["tokens_per_branch"]) + details["probe_tokens"]
    )
    assert reply.usage.prompt_tokens > 0 and reply.choices[0].message.content
    text = client.completions.create(model="sc@beta=0", prompt="Compute 6 * 7.", seed=3)
    assert text.choices[0].text and text.model_extra["autotts"]["branches"] == 1
    chunks = list(client.chat.completions.create(
        model="cmc@beta=0", messages=[{"role": "user", "content": "What is 2 + 2?"}], seed=3,
        stream=True,
    ))  # fmt: skip
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == reply.choices[0].message.content  # same seed, same episode
    system = client.chat.completions.create(
        model="sc@beta=0", seed=3, messages=[{"role": "system", "content": "Answer briefly."},
                                             {"role": "user", "content": "What is 2 + 2?"}],
    )  # fmt: skip
    alone = client.chat.completions.create(
        model="sc@beta=0", seed=3, messages=[{"role": "user", "content": "What is 2 + 2?"}]
    )
    assert system.usage.prompt_tokens > alone.usage.prompt_tokens  # the system prompt went in


def test_concurrent_clients_get_what_they_get_alone(client):
    client, _ = client

    def ask(seed):
        reply = client.chat.completions.create(
            model="cmc@beta=0", seed=seed,
            messages=[{"role": "user", "content": f"What is {seed} + {seed}?"}],
        )  # fmt: skip
        details = reply.model_extra["autotts"]
        return (
            reply.choices[0].message.content,
            reply.usage.completion_tokens,
            details["tokens_per_branch"],
        )

    alone = [ask(seed) for seed in range(16)]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(ask, range(16)))
    assert together == alone
    assert len({content for content, _, _ in alone}) > 1  # the seeds made different episodes


@pytest.mark.skipif(bool(isolation_problems()), reason="no OS isolation here")
def test_a_marked_controller_served_sandboxed_answers_as_in_process(vllm_backend, tmp_path):
    """An LLM-written copy of CMC, served through the sandbox to 8 clients at once, answers
    each exactly as CMC in process answers it alone."""
    marked = tmp_path / "llm_cmc.py"
    source = resolve_controller_path("cmc").read_text(encoding="utf-8")
    marked.write_text(mark_untrusted(source, "test"), encoding="utf-8")
    application = app([str(marked), "cmc"], vllm_backend, SAMPLED, max_in_flight=8)
    with serving(application) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)

        def ask(model, seed):
            reply = client.chat.completions.create(
                model=f"{model}@beta=0", seed=seed,
                messages=[{"role": "user", "content": f"What is {seed} + 1?"}],
            )  # fmt: skip
            details = {**reply.model_extra["autotts"], "controller": "-"}
            return reply.choices[0].message.content, reply.usage.completion_tokens, details

        alone = [ask("cmc", seed) for seed in range(8)]
        with ThreadPoolExecutor(8) as pool:
            sandboxed = list(pool.map(lambda seed: ask("llm-cmc", seed), range(8)))
    assert sandboxed == alone
    assert all(details["branches"] >= 2 for _, _, details in alone)


def test_a_leaving_client_stops_its_generations(client, vllm_backend):
    client, url = client
    body = {"model": "cmc@beta=1", "seed": 5, "stream": True,
            "messages": [{"role": "user", "content": "What is 2 + 2?"}]}  # fmt: skip
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith(": progress"):  # a generation call finished: leave now
                break
    time.sleep(1.0)  # the episode stops at its next call
    sent = vllm_backend.stats.requests
    time.sleep(1.5)
    assert vllm_backend.stats.requests == sent
    metrics = httpx.get(f"{url}/metrics").text
    assert 'autotts_stops_total{model="cmc",reason="cancelled"} 1.0' in metrics


def test_a_leaving_client_has_its_running_generations_aborted_on_the_engine(vllm_backend):
    """A call long enough to leave in the middle of it (greedy: the tiny model never stops
    early; SC at β = 1 opens many branches): the client gives up after 1.5 s, and the engine
    aborts that call's requests (its own count) and holds none of them afterwards."""
    long_calls = LiveSettings(delta=800, max_branch_tokens=800, probe_tokens=4, temperature=0.0)
    application = app(["sc"], vllm_backend, long_calls, max_in_flight=2, max_queue=2)
    with serving(application) as url:
        aborted, generated = vllm_backend.stats.aborted, vllm_backend.stats.generated_tokens
        body = {"model": "sc@beta=1", "seed": 5,
                "messages": [{"role": "user", "content": "What is 2 + 2?"}]}  # fmt: skip
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/chat/completions", json=body, timeout=1.5)
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health").json()["requests_inside"]:
            assert time.monotonic() < deadline, "the episode kept its place"
            time.sleep(0.1)
        assert vllm_backend.stats.aborted > aborted
        assert vllm_backend.stats.generated_tokens == generated  # its one call was cut off
        metrics = httpx.get(f"{url}/metrics").text
        assert 'autotts_stops_total{model="sc",reason="cancelled"} 1.0' in metrics
        assert f"autotts_backend_aborted {float(vllm_backend.stats.aborted)}" in metrics
    assert not vllm_backend.llm.llm_engine.has_unfinished_requests()


def test_the_engine_aborts_a_request_nobody_wants_any_more(vllm_backend):
    """The abort itself, step by step: a request whose ``cancelled()`` turns true after two
    engine steps is aborted there; the one beside it runs to its end."""
    prompt = vllm_backend.prompt("What is 2 + 2?", None, None)
    asked = iter(range(10**6))
    aborted = vllm_backend.stats.aborted
    cut, kept = vllm_backend.generate([
        GenerationRequest(prompt, 800, {"temperature": 0}, 1, cancelled=lambda: next(asked) >= 3),
        GenerationRequest(prompt, 16, {"temperature": 0}, 2),
    ])  # fmt: skip
    assert (cut.n_tokens, kept.n_tokens) == (0, 16)
    assert vllm_backend.stats.aborted == aborted + 1
    assert not vllm_backend.llm.llm_engine.has_unfinished_requests()


def test_the_load_benchmark_runs_without_errors():
    """A bounded load test on loopback (its own engine on the tiny model)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_load.py"
    done = subprocess.run(
        [sys.executable, str(script), "--model", "tiny", "--requests", "4", "--levels", "1,4",
         "--controllers", "sc@beta=0.5"],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("sc@beta=0.5 ")]
    assert [row[1] for row in rows] == ["1", "4"] and all(row[-1] == "0" for row in rows)
    assert "cross-request batching gain" in done.stdout
