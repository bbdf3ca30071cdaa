"""``autotts serve``'s plumbing with the official ``openai`` client, in front of a
protocol-level test double of a vLLM completions server (tests/llm_double.py): what a real
engine cannot be made to do on demand — fail, vanish and come back, hold a generation while a
client leaves. The same app in front of a real vLLM engine: test_serve_live.py."""

import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import fixture_controller
from llm_double import completions_double, varied_reply

from autotts.live.server import OpenAIBackend
from autotts.live.settings import LiveSettings
from autotts.loading.controller_files import mark_untrusted, resolve_controller_path
from autotts.sandbox import SandboxLimits, isolation_problems
from autotts.serving import ServedControllers, app
from autotts.serving.background import free_port, serving

SETTINGS = LiveSettings(delta=32, max_branch_tokens=160, probe_tokens=6, temperature=0.0)
FOUR = ("Reasoning. The answer is \\boxed{4}", [5, 6, 7], "stop")


double = completions_double  # a protocol double of a vLLM server, in a thread


@pytest.fixture
def served():
    with double([FOUR]) as server:
        backend = OpenAIBackend(server.url)
        with serving(app(["sc", "cmc@beta=0.2"], backend, SETTINGS)) as url:
            yield server, url, openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def test_chat_completions_models_health_and_metrics(served):
    server, url, client = served
    assert [m.id for m in client.models.list().data] == ["sc", "cmc"]
    reply = client.chat.completions.create(
        model="sc@beta=0", messages=[{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "What is 2 + 2?"}],
        seed=7,
    )  # fmt: skip
    assert reply.choices[0].message.content.endswith("\\boxed{4}")
    assert reply.model == "sc@beta=0" and reply.choices[0].finish_reason == "stop"
    details = reply.model_extra["autotts"]
    assert details["controller"] == "sc@beta=0" and details["branches"] == 1
    assert details["tokens_per_branch"] == [3] and details["seed"] == 7
    assert reply.usage.completion_tokens == 3  # every token the request generated
    (sent,) = server.requests
    assert reply.usage.prompt_tokens == len(sent["prompt"])  # prefilled: the branch's prompt
    again = client.chat.completions.create(
        model="sc@beta=0", messages=[{"role": "user", "content": "What is 2 + 2?"}], seed=8
    )
    assert again.model_extra["autotts"]["seed"] == 8 and server.requests[1]["seed"] != sent["seed"]
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["models"] == ["sc", "cmc"]
    metrics = httpx.get(f"{url}/metrics").text
    assert 'autotts_requests_total{model="sc",status="200"} 2.0' in metrics
    assert 'autotts_branch_tokens_total{model="sc"} 6.0' in metrics
    assert "autotts_request_seconds_bucket" in metrics


def test_completions_and_beta_in_the_body(served):
    _, _, client = served
    reply = client.completions.create(model="sc", prompt="What is 2 + 2?", extra_body={"beta": 0})
    assert reply.choices[0].text.endswith("\\boxed{4}")
    assert reply.model == "sc@beta=0" and reply.model_extra["autotts"]["branches"] == 1


def test_streaming_sends_progress_then_the_content(served):
    _, url, client = served
    chunks = list(client.chat.completions.create(
        model="sc@beta=0", messages=[{"role": "user", "content": "2 + 2?"}], stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.endswith("\\boxed{4}")
    assert chunks[-1].usage.completion_tokens == 3 and chunks[-2].choices[0].finish_reason == "stop"
    raw = httpx.post(f"{url}/v1/completions", json={"model": "sc@beta=0", "prompt": "2+2?",
                                                    "stream": True}).text  # fmt: skip
    assert raw.startswith(": ") and ": progress {" in raw and raw.endswith("data: [DONE]\n\n")


def test_bad_requests_get_openai_errors_naming_what_is_wrong(served):
    _, url, client = served
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert "served: sc, cmc" in unknown.value.message and unknown.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="beta"):
        client.chat.completions.create(
            model="sc@beta=2", messages=[{"role": "user", "content": "x"}]
        )
    missing = httpx.post(f"{url}/v1/chat/completions", json={"model": "sc"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
    empty = httpx.post(f"{url}/v1/chat/completions",
                       json={"model": "sc", "messages": [{"role": "system", "content": "x"}]})  # fmt: skip
    assert empty.status_code == 400 and "no user message" in empty.json()["error"]["message"]
    broken = httpx.post(f"{url}/v1/completions", content=b"{not json",
                        headers={"content-type": "application/json"})  # fmt: skip
    assert broken.status_code == 400


def test_an_episode_its_token_budget_ends_answers_with_what_its_branches_found():
    more = ("Thinking on. ", [9] * 32, "length")  # two branches finish, one goes on
    with (
        double([FOUR, FOUR, more]) as server,
        serving(app(["cmc"], OpenAIBackend(server.url), SETTINGS)) as url,
    ):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(
            model="cmc@beta=0.2", messages=[{"role": "user", "content": "2 + 2?"}], max_tokens=20
        )
    details = reply.model_extra["autotts"]
    assert reply.choices[0].finish_reason == "length" and details["budget_spent"]
    assert reply.choices[0].message.content.endswith("\\boxed{4}")
    assert details["stop_reason"].endswith(
        "budget is 20; answered by the majority of 2 finished branches"
    ), details["stop_reason"]
    assert reply.usage.completion_tokens == 3 + 3 + 32  # the call that reached the budget
    assert len(server.requests) == 3  # and nothing after it


def test_a_dead_backend_is_a_502_and_the_server_answers_once_it_is_back():
    port = free_port()
    with double([FOUR], port=port) as first:
        backend = OpenAIBackend(first.url)
    with serving(app(["sc@beta=0"], backend, SETTINGS)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        ask = {"model": "sc", "messages": [{"role": "user", "content": "2 + 2?"}]}
        with pytest.raises(openai.APIStatusError) as down:
            client.chat.completions.create(**ask)
        assert down.value.status_code == 502 and "'double' (openai)" in down.value.message
        with double([FOUR], port=port):
            reply = client.chat.completions.create(**ask)
        assert reply.choices[0].message.content.endswith("\\boxed{4}")


def test_a_full_server_answers_429_and_a_leaving_client_stops_its_episode():
    barrier = threading.Barrier(2)
    held = (*FOUR, "wait")
    with double([held, FOUR], barrier) as server:
        backend = OpenAIBackend(server.url)
        application = app(["cmc@beta=0"], backend, SETTINGS, max_in_flight=1, max_queue=0)
        with serving(application) as url:
            body = {"model": "cmc", "messages": [{"role": "user", "content": "2 + 2?"}],
                    "stream": True}  # fmt: skip
            with httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as first:
                deadline = time.monotonic() + 10
                while not server.requests:  # the first episode's generation is held
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                full = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": False})
                assert full.status_code == 429 and full.headers["Retry-After"] == "1"
                assert full.json()["error"]["type"] == "rate_limit_error"
                assert first.status_code == 200
            # the client left while its first generation was held; release it
            sent = len(server.requests)
            barrier.wait(timeout=10)
            cancelled = 'autotts_stops_total{model="cmc",reason="cancelled"} 1.0'
            deadline = time.monotonic() + 20  # (the episode ends at its next call)
            while cancelled not in (metrics := httpx.get(f"{url}/metrics").text):
                assert time.monotonic() < deadline, metrics
                time.sleep(0.1)
            assert len(server.requests) == sent  # no further generation was sent
            assert 'status="429"} 1.0' in metrics


def test_autotts_serve_command_serves_until_stopped(tmp_path):
    import signal
    import subprocess
    import sys

    with double([FOUR]) as server:
        port = free_port()
        command = [sys.executable, "-m", "autotts.cli", "serve", "sc@beta=0", "--backend", "openai",
                   "--base-url", server.url, "--port", str(port), "--delta", "32",
                   "--max-branch-tokens", "160", "--probe-tokens", "6", "--temperature", "0"]  # fmt: skip
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:
            client = openai.OpenAI(
                base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0
            )
            deadline = time.monotonic() + 60
            while True:
                try:
                    models = client.models.list()
                    break
                except openai.APIConnectionError:
                    assert process.poll() is None, process.stderr.read()
                    assert time.monotonic() < deadline, "autotts serve did not come up"
                    time.sleep(0.2)
            assert [m.id for m in models.data] == ["sc"]
            reply = client.completions.create(model="sc", prompt="What is 2 + 2?")
            assert reply.choices[0].text.endswith("\\boxed{4}")
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0
    refused = subprocess.run([sys.executable, "-m", "autotts.cli", "serve", "nonesuch",
                              "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2 and "unknown controller 'nonesuch'" in refused.stderr


@pytest.mark.skipif(bool(isolation_problems()), reason="no OS isolation here")
def test_a_marked_controller_is_served_sandboxed_and_answers_as_in_process(tmp_path):
    """An LLM-written file is served through the sandbox (never imported by the server): each
    request's episode is played by a fresh isolated worker, and answers exactly as the same
    controller in process, request for request."""
    marked = tmp_path / "llm_cmc.py"
    source = resolve_controller_path("cmc").read_text(encoding="utf-8")
    marked.write_text(mark_untrusted(source, "test"), encoding="utf-8")
    with (
        double(varied_reply) as server,
        serving(app([str(marked), "cmc"], OpenAIBackend(server.url), SETTINGS)) as url,
    ):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        listed = {m.id: m.model_extra["sandboxed"] for m in client.models.list().data}
        assert listed == {"llm-cmc": True, "cmc": False}
        for seed in (1, 2, 3):
            ask = {"messages": [{"role": "user", "content": "What is 2 + 2?"}], "seed": seed}
            mine = client.chat.completions.create(model="llm-cmc@beta=0.3", **ask)
            theirs = client.chat.completions.create(model="cmc@beta=0.3", **ask)
            assert mine.choices[0].message.content == theirs.choices[0].message.content
            assert mine.usage == theirs.usage
            details = {**mine.model_extra["autotts"], "controller": "cmc@beta=0.3"}
            assert details == theirs.model_extra["autotts"]


@pytest.mark.skipif(bool(isolation_problems()), reason="no OS isolation here")
def test_a_sandboxed_episode_computing_holds_no_other_request_back(tmp_path):
    """Requests share engine batches, but a sandboxed episode joins them with its calls only:
    while its worker computes (here until its CPU limit per round), the other requests'
    generations go on."""
    marked = tmp_path / "stalls.py"  # (it computes forever after its first branch)
    hangs = Path(fixture_controller("hangs")).read_text(encoding="utf-8")
    marked.write_text(mark_untrusted(hangs, "test"), encoding="utf-8")
    finished = {}
    with (
        double(varied_reply) as server,
        serving(app([str(marked), "sc"], OpenAIBackend(server.url), SETTINGS)) as url,
    ):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)

        def ask(model: str):
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "2 + 2?"}], seed=1
            )
            finished[model] = (time.monotonic(), reply.model_extra["autotts"]["stop_reason"])

        stalled = threading.Thread(target=ask, args=("stalls",))
        stalled.start()
        deadline = time.monotonic() + 30
        while len(server.requests) < 2:  # its branch and probe are done: it computes now
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ask("sc@beta=0")
        stalled.join(timeout=120)
    assert finished["sc@beta=0"][0] < finished["stalls"][0]
    assert finished["stalls"][1].startswith("sandbox: CPU-time limit exceeded: a round")


def test_a_request_stops_generating_at_its_token_budget(tmp_path):
    """``max_tokens`` bounds the whole episode (branches and probes), within the server's cap:
    once it is reached no further call is sent, and the episode answers with what its
    branches found (``finish_reason: "length"``); a sandboxed controller is held to it by the
    same trusted backend, and answers as in process."""
    marked = tmp_path / "llm_cmc.py"
    source = resolve_controller_path("cmc").read_text(encoding="utf-8")
    marked.write_text(mark_untrusted(source, "test"), encoding="utf-8")
    ask = {"messages": [{"role": "user", "content": "What is 2 + 2?"}], "seed": 1}
    one_call = 4 * 32 + 4 * 6  # CMC's largest call here: four branches of Δ, four probes

    def honouring_max_tokens(body: dict) -> tuple:  # as an engine does (the script need not)
        text, ids, finish = varied_reply(body)
        cut = ids[: body["max_tokens"]]
        return (text, cut, finish) if len(cut) == len(ids) else (text[: len(cut)], cut, "length")

    with (
        double(honouring_max_tokens) as server,
        serving(
            app([str(marked), "cmc"], OpenAIBackend(server.url), SETTINGS, max_request_tokens=150)
        ) as url,  # fmt: skip
    ):  # (unbounded, this episode generates 160 tokens)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        capped = client.chat.completions.create(model="cmc@beta=0.3", **ask, max_tokens=10**6)
        assert capped.choices[0].finish_reason == "length"  # the server's cap of 150 holds
        assert 150 <= capped.usage.completion_tokens < 150 + one_call
        replies = {}
        for model in ("cmc@beta=0.3", "llm-cmc@beta=0.3"):
            reply = client.chat.completions.create(model=model, **ask, max_completion_tokens=60)
            details = reply.model_extra["autotts"]
            assert reply.choices[0].finish_reason == "length" and details["budget_spent"]
            assert details["stop_reason"].startswith("token budget spent: ")
            assert 60 <= reply.usage.completion_tokens < 60 + one_call
            replies[model] = (reply.choices[0].message.content, reply.usage,
                              {**details, "controller": ""})  # fmt: skip
        assert replies["cmc@beta=0.3"] == replies["llm-cmc@beta=0.3"]
        bad = httpx.post(
            f"{url}/v1/chat/completions", json={"model": "cmc", **ask, "max_tokens": 0}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "max_tokens"
        metrics = httpx.get(f"{url}/metrics").text
        assert 'autotts_stops_total{model="cmc",reason="budget"} 2.0' in metrics


@pytest.mark.skipif(bool(isolation_problems()), reason="no OS isolation here")
def test_the_server_sets_an_untrusted_controllers_cpu_limit(tmp_path):
    """``ServedControllers(..., limits)`` (``autotts serve --sandbox-cpu-s``): a served
    LLM-written controller computing forever is ended at the server's CPU limit per request."""
    marked = tmp_path / "stalls.py"
    hangs = Path(fixture_controller("hangs")).read_text(encoding="utf-8")
    marked.write_text(mark_untrusted(hangs, "test"), encoding="utf-8")
    served = ServedControllers([str(marked)], SandboxLimits(cpu_s=2.0, memory_mb=2048))
    with (
        double(varied_reply) as server,
        serving(app(served, OpenAIBackend(server.url), SETTINGS)) as url,
    ):
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
            "model": "stalls", "messages": [{"role": "user", "content": "2 + 2?"}]})  # fmt: skip
    served.close()
    stop = reply.json()["autotts"]["stop_reason"]
    assert stop.startswith("sandbox: CPU-time limit exceeded (2 s of CPU)"), stop
