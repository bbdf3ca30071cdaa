"""The OpenAI backend's plumbing against a protocol-level test double: a local HTTP server
that speaks the completions API (with vLLM's /tokenize and token ids) and replays scripted
replies. It covers what a real tiny model cannot be made to do on demand: empty generations,
an immediate EOS, a server error mid-episode. The real server is tested in
test_build_and_validate.py."""

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from llm_double import send_json

from autotts import Answer, Branch, Continue, Controller
from autotts.live.live_environment import LiveEnvironment, LiveQuestion
from autotts.live.server import OpenAIBackend
from autotts.live.settings import LiveSettings


class CompletionsDouble(ThreadingHTTPServer):
    """Replies to /v1/completions with ``script`` in order (the last one repeats)."""

    def __init__(self, script, barrier=None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script, self.requests, self.lock = list(script), [], threading.Lock()
        self.barrier = barrier  # replies marked "wait" wait there (for several servers at once)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    _send = send_json

    def do_GET(self):  # noqa: N802
        self._send(200, {"object": "list", "data": [{"id": "double", "object": "model",
                                                     "max_model_len": 1024}]})  # fmt: skip

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/tokenize":
            text = body.get("prompt") or json.dumps(body.get("messages"))
            return self._send(200, {"tokens": list(text.encode())[:64], "count": 1,
                                    "max_model_len": 1024})  # fmt: skip
        server = self.server
        with server.lock:
            server.requests.append(body)
            reply = server.script.pop(0) if len(server.script) > 1 else server.script[0]
        if reply == "error":
            return self._send(500, {"error": {"message": "engine died", "type": "server"}})
        text, ids, reason, *extra = reply
        if "wait" in extra:
            try:
                server.barrier.wait(timeout=20)
            except threading.BrokenBarrierError:
                return self._send(500, {"error": {"message": "alone at the barrier"}})
        choice = {"index": 0, "text": text, "finish_reason": reason, "logprobs": None}
        if "no-ids" not in extra:  # a server that ignores return_token_ids leaves them out
            choice["token_ids"] = ids
        self._send(200, {
            "id": "c", "object": "text_completion", "created": 0, "model": "double",
            "choices": [choice],
            "usage": {"prompt_tokens": 1, "completion_tokens": len(ids), "total_tokens": 1},
        })  # fmt: skip


@contextlib.contextmanager
def two_models(small_script, large_script, barrier=None):
    """Two doubles serving, and a live environment whose models ``small`` and ``large`` are
    one each (the main backend is ``small``)."""
    small = CompletionsDouble(small_script, barrier)
    large = CompletionsDouble(large_script, barrier)
    for server in (small, large):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield small, large, LiveEnvironment(
            OpenAIBackend(small.url), QUESTION, SETTINGS, max_branches=8, aliases=["small"],
            others={"large": OpenAIBackend(large.url)},
        )  # fmt: skip
    finally:
        small.shutdown()
        large.shutdown()


@pytest.fixture
def double(request):
    server = CompletionsDouble(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


class Greedy(Controller):
    name = "greedy"

    @staticmethod
    def schedule(beta):
        return {}

    def run(self, state):
        ids = yield Branch(2, probe=False)
        while active := [i for i in ids if not (state.finished[i] or state.pruned[i])]:
            yield Continue(active, probe=False)
        return Answer(state.finals[0], "first final")


SETTINGS = LiveSettings(delta=8, max_branch_tokens=64, probe_tokens=4)
QUESTION = [LiveQuestion("What is 2 + 2?", "4")]


@pytest.mark.parametrize("double", [[("", [], "length")]], indirect=True)
def test_empty_generations_finish_the_branch_instead_of_looping(double):
    env = LiveEnvironment(OpenAIBackend(double.url), QUESTION, SETTINGS, max_branches=2)
    result = env.run_episode(Greedy(), {}, 0, 0)
    assert result.error is None and result.answer == "ERR" and result.tokens == 0
    assert len(double.requests) == 2  # one request per branch, then both finished


@pytest.mark.parametrize(
    "double",
    [[("so \\boxed{4}", [5, 6, 7], "stop"), ("x" * 8, list(range(8)), "length")]],
    indirect=True,
)
def test_eos_finishes_with_the_boxed_answer_and_token_ids_continue(double):
    env = LiveEnvironment(OpenAIBackend(double.url), QUESTION, SETTINGS, max_branches=2)
    result = env.run_episode(Greedy(), {}, 0, 0)
    assert result.error is None and result.answer == "4"
    assert result.tokens == 3 + 64  # branch 1 ran to the 64-token limit
    continued = [r["prompt"] for r in double.requests[2:]]
    assert all(isinstance(p, list) and p[-8:] == list(range(8)) for p in continued)
    assert all(r["seed"] is not None and r["return_token_ids"] for r in double.requests)


@pytest.mark.parametrize("double", [[("abc", [1, 2, 3], "length"), "error"]], indirect=True)
def test_a_server_error_mid_episode_ends_it_with_a_clear_error(double):
    env = LiveEnvironment(OpenAIBackend(double.url), QUESTION, SETTINGS, max_branches=2)
    result = env.run_episode(Greedy(), {}, 0, 0)
    assert result.answer is None and result.error.startswith("inference backend failed")


def test_each_models_branches_go_to_its_own_server():
    from conftest import Scripted

    from autotts import Generate, Read
    from autotts.collab import CollabGraph, GraphController

    servers = two_models([("so \\boxed{4}", [5, 6, 7], "stop")], [("\\boxed{5}", [9], "stop")])
    with servers as (small, large, env):
        script = Scripted(
            [Read(2, model="small"), Read(1, model="large"), Generate("Sure?", "large", 4)]
        )
        result = env.run_episode(script, {}, 0, 0)
        assert result.error is None
        assert script.state.models == ("double", "small", "large")
        assert script.state.model == ["small", "small", "large"]
        assert script.state.finals == ["4", "4", "5"] and script.replies[2] == "\\boxed{5}"
        assert (len(small.requests), len(large.requests)) == (2, 2)  # 2 branches; 1 + Generate
        assert result.tokens == 3 + 3 + 1 + 1
        graph = CollabGraph.from_data(
            {
                "nodes": [
                    {"id": "a", "role": "generate", "model": "small", "controller": "sc",
                     "beta": 0.0, "width": 2},
                    {"id": "b", "role": "generate", "model": "large", "controller": "sc",
                     "beta": 0.0},
                    {"id": "vote", "role": "vote"},
                ],
                "edges": [["a", "vote"], ["b", "vote"]],
            }
        )  # fmt: skip
        voted = env.run_episode(GraphController(graph), {"scale": 1.0}, 0, 1)
        assert voted.error is None and voted.answer == "4"  # two small finals outvote one


@pytest.mark.parametrize(
    "double",
    [[("step one", [1] * 8, "length", "no-ids"), ("\\boxed{4}", [7] * 3, "stop", "no-ids")]],
    indirect=True,
)
def test_a_server_ignoring_return_token_ids_is_continued_from_its_text(double):
    backend = OpenAIBackend(double.url)
    env = LiveEnvironment(backend, QUESTION, SETTINGS, max_branches=8)
    assert not isinstance(env.prompt(0), str)  # /tokenize works, so prompts are token ids
    result = env.run_episode(Greedy(), {}, 0, 0)
    assert result.error is None and result.answer == "4"
    assert result.tokens == 8 + 3 + 3  # from the usage: 8, then 3 (finished), then 3
    # the continuation sent the first interval's text, tokenized again by /tokenize
    second = double.requests[2]["prompt"]
    assert second[-len(b"step one") :] == list(b"step one")


def test_branches_on_several_servers_are_generated_at_the_same_time():
    script = [("a", [1] * 8, "length"), ("\\boxed{4}", [2] * 2, "stop", "wait")]
    with two_models(script, script, threading.Barrier(2)) as (_, _, env):

        class TwoModels(Controller):
            name = "two-models"

            @staticmethod
            def schedule(beta):
                return {}

            def run(self, state):
                yield Branch(1, probe=False, model="small")
                yield Branch(1, probe=False, model="large")
                yield Continue([0, 1], probe=False)  # one step, both servers at once
                return Answer(state.finals[0], "first final")

        result = env.run_episode(TwoModels(), {}, 0, 0)
        assert result.error is None, result.error  # one server alone breaks the barrier
        assert result.answer == "4" and result.tokens == 2 * (8 + 2)
