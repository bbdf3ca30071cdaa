"""The OpenAI backend's plumbing against a protocol-level test double: a local HTTP server
that speaks the completions API (with vLLM's /tokenize and token ids) and replays scripted
replies. It covers what a real tiny model cannot be made to do on demand: empty generations,
an immediate EOS, a server error mid-episode. The real server is tested in
test_build_and_validate.py."""

import contextlib
import threading

import pytest
from llm_double import CompletionsDouble

from autotts import Answer, Branch, Continue, Controller
from autotts.live.live_environment import LiveEnvironment, LiveQuestion
from autotts.live.server import OpenAIBackend
from autotts.live.settings import LiveSettings


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


def test_a_request_nobody_wants_any_more_is_cut_off_while_it_runs():
    """A request whose ``cancelled()`` turns true while the server still works on it has its
    connection closed (what makes a vLLM server abort it: its completions endpoint cancels
    on disconnect) and comes back empty at once; the one beside it is answered."""
    import time

    from autotts.live.backend import GenerationRequest

    never = threading.Barrier(2)  # a reply marked "wait" waits here until its 20 s are up
    script = {"[1]": ("slow", [1], "length", "wait"), "[2]": ("fast", [2], "stop")}
    server = CompletionsDouble(script, never)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend(server.url)
        left = time.monotonic() + 0.5
        slow = GenerationRequest((1,), 8, seed=0, cancelled=lambda: time.monotonic() > left)
        start = time.monotonic()
        cut, answered = backend.generate([slow, GenerationRequest((2,), 8, seed=1)])
        assert time.monotonic() - start < 5
        assert (cut.n_tokens, cut.text, answered.token_ids) == (0, "", (2,))
        assert backend.stats.aborted == 1 and backend.stats.generated_tokens == 1
        backend.close()
    finally:
        server.shutdown()


def test_closing_the_backend_ends_a_generation_that_runs():
    """``close()`` while a generation waits on the server (here for 20 s): the generation
    fails at once with a clear error instead of waiting for ever, and later calls fail too."""
    import time

    from autotts.live.backend import BackendError, GenerationRequest

    never = threading.Barrier(2)
    server = CompletionsDouble([("slow", [1], "length", "wait")], never)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend(server.url)
        failed = []

        def generate():
            try:
                backend.generate([GenerationRequest((1,), 8, seed=0)])
            except BackendError as exc:
                failed.append(str(exc))

        running = threading.Thread(target=generate)
        running.start()
        while not server.requests:
            time.sleep(0.02)
        start = time.monotonic()
        backend.close()
        running.join(timeout=10)
        assert not running.is_alive() and time.monotonic() - start < 8
        assert failed and "closed during a generation" in failed[0]
        with pytest.raises(BackendError, match="is closed"):
            backend.generate([GenerationRequest((1,), 8, seed=0)])
    finally:
        server.shutdown()
