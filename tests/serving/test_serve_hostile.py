"""``autotts serve`` against hostile or unlucky clients, in front of the protocol double of a
vLLM completions server (tests/llm_double.py): requests that must not crash the server, leak
its capacity or change another request's result, and the counts ``/metrics`` must keep."""

import asyncio
import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from llm_double import completions_double

from autotts.errors import BadInput
from autotts.live.backend import BackendError, Generation, GenerationBackend, GenerationRequest
from autotts.live.lockstep import LockstepBackend
from autotts.live.server import OpenAIBackend
from autotts.live.settings import LiveSettings
from autotts.serving import app
from autotts.serving.background import serving

SETTINGS = LiveSettings(delta=32, max_branch_tokens=160, probe_tokens=6, temperature=0.0)
FOUR = ("Reasoning. The answer is \\boxed{4}", [5, 6, 7], "stop")
MORE = ("Still thinking", [5, 6, 7], "length")  # unfinished: the episode needs another call
ASK = {"model": "cmc@beta=0", "messages": [{"role": "user", "content": "2 + 2?"}]}


double = completions_double  # a protocol double of a vLLM server, in a thread


def metric_lines(url: str) -> list[str]:
    return [line for line in httpx.get(f"{url}/metrics").text.splitlines() if "{" in line]


def wait_for(condition, timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def inside(url: str) -> int:
    return httpx.get(f"{url}/health").json()["requests_inside"]


def is_openai_error(reply: httpx.Response) -> bool:
    try:
        error = reply.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error.get("message"), str) and "type" in error


FRAGILE = """
from autotts import Answer, Controller, Read, majority


class Fragile(Controller):
    name = "fragile"
    description = "its schedule divides by beta"

    @staticmethod
    def schedule(beta: float) -> dict:
        return {"n": max(1, round(0.5 / beta))}  # beta = 0: ZeroDivisionError

    def run(self, state, n: int):
        yield Read(1)
        return Answer(majority(state.finals), "one branch")
"""


def test_a_schedule_that_fails_at_the_asked_beta_is_an_error_reply_and_frees_its_place(tmp_path):
    path = tmp_path / "fragile.py"
    path.write_text(FRAGILE)
    with double([FOUR]) as server:
        application = app([str(path)], OpenAIBackend(server.url), SETTINGS, max_in_flight=1,
                          max_queue=0)  # fmt: skip
        with serving(application) as url:
            for _ in range(2):  # a place lost per failure would make the second a 429
                failed = httpx.post(f"{url}/v1/completions",
                                    json={"model": "fragile@beta=0", "prompt": "2 + 2?"})  # fmt: skip
                assert failed.status_code in (400, 500) and is_openai_error(failed), failed.text
                assert inside(url) == 0
            fine = httpx.post(f"{url}/v1/completions", json={"model": "fragile@beta=1",
                                                             "prompt": "2 + 2?"})  # fmt: skip
            assert fine.status_code == 200, fine.text


@pytest.mark.parametrize("part", [{"type": "text", "text": None}, {"type": "text", "text": 5}])
def test_a_content_part_whose_text_is_not_a_string_is_a_400(part):
    with double([FOUR]) as server, serving(app(["sc"], OpenAIBackend(server.url))) as url:
        body = {"model": "sc", "messages": [{"role": "user", "content": [part]}]}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body)
        assert reply.status_code == 400 and is_openai_error(reply), reply.text
        assert reply.json()["error"]["param"].startswith("messages")


def test_a_question_that_is_not_valid_unicode_is_a_400_not_a_backend_failure():
    """A lone surrogate (valid JSON, not encodable text) is the client's error: vLLM's
    tokenizer raises TypeError on it, an OpenAI-compatible server cannot be sent it."""
    with (
        double([FOUR]) as server,
        serving(app(["sc@beta=0"], OpenAIBackend(server.url), SETTINGS)) as url,
    ):
        for raw in (b'{"model": "sc", "prompt": "2 + 2 = ?\\ud800"}',
                    b'{"model": "sc", "messages": [{"role": "system", "content": "\\udfff"},'
                    b' {"role": "user", "content": "2 + 2?"}]}'):  # fmt: skip
            where = "completions" if b"prompt" in raw else "chat/completions"
            reply = httpx.post(f"{url}/v1/{where}", content=raw,
                               headers={"content-type": "application/json"})  # fmt: skip
            assert reply.status_code == 400 and is_openai_error(reply), reply.text
        assert not server.requests  # nothing reached the backend


class Crashing(OpenAIBackend):
    """The double behind a tokenizer that raises something other than BackendError on one
    question (as vLLM's does on text it cannot encode)."""

    def prompt(self, user_message, system=None, thinking=None):
        if "crash" in user_message:
            raise RuntimeError("the tokenizer crashed")
        return super().prompt(user_message, system, thinking)


def test_an_unexpected_failure_is_an_openai_error_streamed_or_not_and_is_counted():
    with (
        double([FOUR]) as server,
        serving(app(["sc@beta=0"], Crashing(server.url), SETTINGS)) as url,
    ):
        body = {"model": "sc", "prompt": "please crash"}
        reply = httpx.post(f"{url}/v1/completions", json=body)
        assert reply.status_code == 500 and is_openai_error(reply), reply.text
        streamed = httpx.post(f"{url}/v1/completions", json={**body, "stream": True})
        events = [e for e in streamed.text.split("\n\n") if e.startswith("data: ")]
        assert events and "error" in json.loads(events[-1].removeprefix("data: "))
        assert 'autotts_requests_total{model="sc",status="500"} 2.0' in metric_lines(url)
        assert inside(url) == 0
        fine = httpx.post(f"{url}/v1/completions", json={"model": "sc", "prompt": "2 + 2?"})
        assert fine.status_code == 200


def test_a_client_leaving_a_non_streaming_request_is_counted_as_cancelled():
    barrier = threading.Barrier(2)
    with (
        double([(*MORE, "wait"), MORE], barrier) as server,
        serving(app(["cmc"], OpenAIBackend(server.url), SETTINGS)) as url,
    ):
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and hangs up
            httpx.post(f"{url}/v1/chat/completions", json=ASK, timeout=1.0)
        time.sleep(1.0)  # the server looks for a disconnected client every 0.25 s
        sent = len(server.requests)
        barrier.wait(timeout=10)  # the held generation returns; the episode wants more
        wait_for(lambda: inside(url) == 0, what="the episode to end")
        assert len(server.requests) == sent  # no further generation was sent
        lines = metric_lines(url)
        assert 'autotts_stops_total{model="cmc",reason="cancelled"} 1.0' in lines, lines
        assert 'autotts_requests_total{model="cmc",status="499"} 1.0' in lines, lines
        assert not any('status="200"' in line for line in lines), lines


def test_a_left_stream_has_its_running_generation_aborted_then_frees_its_place():
    """The client leaves while its episode's generation hangs on the backend: the request is
    cut off (its connection closed, as makes vLLM abort it), the episode ends without waiting
    for the reply, and its place is free for the next client."""
    barrier = threading.Barrier(2)
    with double([(*MORE, "wait"), MORE, FOUR], barrier) as server:
        application = app(["cmc"], OpenAIBackend(server.url), SETTINGS, max_in_flight=1,
                          max_queue=0)  # fmt: skip
        with serving(application) as url:
            try:
                with httpx.stream("POST", f"{url}/v1/chat/completions",
                                  json={**ASK, "stream": True}) as first:  # fmt: skip
                    assert first.status_code == 200
                    wait_for(lambda: server.requests, what="the first generation")
                stopped = 'autotts_stops_total{model="cmc",reason="cancelled"} 1.0'
                wait_for(lambda: stopped in metric_lines(url), what="the server to see it")
                # the backend still holds its reply (at the barrier): the episode ends anyway
                wait_for(lambda: inside(url) == 0, what="the episode to end")
                text = httpx.get(f"{url}/metrics").text
                assert "autotts_backend_aborted 1.0" in text
                assert "autotts_requests_in_flight 0.0" in text
            finally:
                barrier.wait(timeout=10)


def test_closing_a_stream_without_cancelling_its_task_stops_the_episode():
    """A server on ASGI spec 2.4 (Starlette then streams without a disconnect listener)
    stops iterating a stream whose client left and lets it be closed (GeneratorExit at its
    ``yield``), not cancelled; the episode must stop all the same."""
    from autotts.serving.metrics import ServeMetrics
    from autotts.serving.openai_api import _stream

    class Backend:
        cancelled = False

        def cancel(self):
            self.cancelled = True

    async def leave_after_the_first_comment():
        backend = Backend()
        task = asyncio.get_running_loop().create_future()  # an episode that goes on
        stream = _stream(None, task, asyncio.Queue(), backend, None, ServeMetrics(), "m")
        assert (await stream.__anext__()).startswith(":")
        await stream.aclose()
        task.cancel()
        return backend.cancelled

    assert asyncio.run(leave_after_the_first_comment())


def test_max_in_flight_above_forty_runs_that_many_episodes_at_once():
    """anyio's default thread limiter (40) must not cap ``max_in_flight`` silently."""
    n = 42
    barrier = threading.Barrier(2)
    with double([(*FOUR, "wait"), FOUR], barrier) as server:
        application = app(["sc@beta=0"], OpenAIBackend(server.url), SETTINGS, max_in_flight=n,
                          max_queue=0)  # fmt: skip
        shared = application.state.backend
        with serving(application) as url:
            body = {"model": "sc", "prompt": "2 + 2?"}
            with ThreadPoolExecutor(n) as pool:
                try:
                    first = pool.submit(httpx.post, f"{url}/v1/completions", json=body, timeout=60)
                    wait_for(lambda: server.requests, what="the first generation")
                    rest = [pool.submit(httpx.post, f"{url}/v1/completions", json=body,
                                        timeout=60) for _ in range(n - 1)]  # fmt: skip
                    # every episode is in flight: one generating, the others waiting to batch
                    with contextlib.suppress(AssertionError):
                        wait_for(lambda: shared._active == n, timeout_s=10)
                    assert shared._active == n, f"{shared._active} of {n} episodes in flight"
                finally:
                    barrier.wait(timeout=20)
                assert all(f.result().status_code == 200 for f in [first, *rest])


def test_a_served_controller_needing_signals_the_settings_lack_is_refused():
    """DeepConf reads per-interval confidence; served without logprobs it would answer every
    request from its no-usable-trace fallback instead of refusing, as evaluation does."""
    with double([FOUR]) as server:
        backend = OpenAIBackend(server.url)
        with pytest.raises(BadInput, match="confidence"):
            app(["deepconf"], backend, SETTINGS.model_copy(update={"logprobs": 0}))
        app(["deepconf"], backend, SETTINGS)  # (logprobs=20 by default)


def test_autotts_serve_records_the_signals_a_served_controller_reads():
    """``autotts serve`` asks for no logprobs (they cost); DeepConf needs them."""
    import subprocess
    import sys

    from autotts.serving.background import free_port

    with double([FOUR]) as server:
        port = free_port()
        command = [sys.executable, "-m", "autotts.cli", "serve", "deepconf@beta=0", "--backend",
                   "openai", "--base-url", server.url, "--port", str(port), "--delta", "32",
                   "--max-branch-tokens", "160", "--probe-tokens", "6"]  # fmt: skip
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:

            def up():
                assert process.poll() is None, process.stderr.read()
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(up, timeout_s=60, what="autotts serve")
            reply = httpx.post(f"http://127.0.0.1:{port}/v1/completions",
                               json={"model": "deepconf", "prompt": "2 + 2?"}, timeout=60)  # fmt: skip
            assert reply.status_code == 200, reply.text
            assert server.requests, reply.text
            assert all(r.get("logprobs") for r in server.requests), server.requests[0]
        finally:
            process.terminate()
            process.wait(timeout=30)


class Fussy(GenerationBackend):
    """Refuses a batch holding the prompt (666,), as a server refuses one bad request."""

    name = model = "fussy"

    def prompt(self, user_message, system, thinking):
        return (1,)

    def encode(self, text):
        return (1,)

    def generate(self, requests):
        if any(r.prefix == (666,) for r in requests):
            raise BackendError("prompt 666 is refused")
        return [Generation((7,), "x", True, 1) for _ in requests]


def test_one_refused_generation_does_not_fail_the_episodes_batched_with_it():
    shared = LockstepBackend(Fussy())
    both_in_flight = threading.Barrier(2)
    results: dict = {}

    def episode(name, prefix):
        with shared.episode():
            both_in_flight.wait(timeout=10)  # both in flight: their calls make one batch
            try:
                results[name] = shared.generate([GenerationRequest(prefix, 4)])
            except BackendError as exc:
                results[name] = exc

    threads = [threading.Thread(target=episode, args=a) for a in (("good", (1, 2)),
                                                                  ("bad", (666,)))]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert isinstance(results["bad"], BackendError)
    assert isinstance(results["good"], list) and results["good"][0].text == "x", results


class SlowPrompt(OpenAIBackend):
    """The double behind a tokenizer that takes seconds on one (huge) question."""

    def prompt(self, user_message, system=None, thinking=None):
        if "huge" in user_message:
            time.sleep(3.0)
        return super().prompt(user_message, system, thinking)


def test_a_request_still_preparing_its_prompt_does_not_hold_the_others_generations():
    """Episodes join the shared batches once they generate: one still tokenizing its prompt
    (a huge question) must not stall every episode in flight."""
    with (
        double([FOUR]) as server,
        serving(app(["cmc@beta=0"], SlowPrompt(server.url), SETTINGS)) as url,
        ThreadPoolExecutor(2) as pool,
    ):
        slow = pool.submit(httpx.post, f"{url}/v1/completions",
                           json={"model": "cmc", "prompt": "a huge question"}, timeout=30)  # fmt: skip
        time.sleep(0.5)  # it is tokenizing its prompt now
        start = time.monotonic()
        quick = httpx.post(f"{url}/v1/completions", json={"model": "cmc", "prompt": "2 + 2?"})
        seconds = time.monotonic() - start
        assert quick.status_code == 200 and slow.result().status_code == 200
        assert seconds < 1.5, f"a quick request took {seconds:.1f} s behind a slow prompt"


class LongPrompt(OpenAIBackend):
    """The double behind a tokenizer that makes a long question 1,000 tokens (the double's
    context is 1,024)."""

    def prompt(self, user_message, system=None, thinking=None):
        if "long" in user_message:
            return tuple(range(1000))
        return super().prompt(user_message, system, thinking)


def test_a_question_too_long_for_the_context_is_the_clients_400_not_a_backend_failure():
    with (
        double([FOUR]) as server,
        serving(app(["sc@beta=0"], LongPrompt(server.url), SETTINGS)) as url,
    ):
        reply = httpx.post(f"{url}/v1/completions", json={"model": "sc", "prompt": "a long one"})
        assert reply.status_code == 400 and is_openai_error(reply), reply.text
        fine = httpx.post(f"{url}/v1/completions", json={"model": "sc", "prompt": "2 + 2?"})
        assert fine.status_code == 200


def test_a_batch_whose_backend_says_which_request_failed_is_split_without_a_retry():
    """The OpenAI backend reports which request of a merged batch failed
    (:class:`BatchFailure`): the episode holding it fails, the other gets its generation, and
    nothing is sent twice."""
    with double(["error", ("x", [7], "stop")]) as server:
        inner = OpenAIBackend(server.url)
        inner.async_client = inner.async_client.with_options(max_retries=0)  # no second ask
        shared = LockstepBackend(inner)
        both_in_flight = threading.Barrier(2)
        results: dict = {}

        def episode(name):
            with shared.episode():
                both_in_flight.wait(timeout=10)
                try:
                    results[name] = shared.generate([GenerationRequest((1, 2), 4, seed=len(name))])
                except BackendError as exc:
                    results[name] = exc

        threads = [threading.Thread(target=episode, args=(name,)) for name in ("one", "two")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert len(server.requests) == 2  # one merged batch, no request sent again
    outcomes = sorted(type(r).__name__ for r in results.values())
    assert outcomes == ["BackendError", "list"], results
    (good,) = [r for r in results.values() if isinstance(r, list)]
    assert good[0].token_ids == (7,) and shared.stats.generated_tokens == 1
