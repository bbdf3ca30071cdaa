"""Several servers of one model as one backend (``--base-url`` twice), against two protocol
doubles of a vLLM server: each question's requests stay on the server its prompt was given,
questions are spread over the servers, and a failing server fails only its own requests."""

import contextlib
import threading

import pytest
from llm_double import CompletionsDouble

from autotts.cli.live import make_backend
from autotts.live.backend import BackendError, BatchFailure, GenerationRequest
from autotts.live.server_pool import ServerPool


@contextlib.contextmanager
def doubles(*scripts):
    servers = [CompletionsDouble(script) for script in scripts]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield servers
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def pool_of(servers) -> ServerPool:
    pool = make_backend("openai", None, [s.url for s in servers], None, 0, 1, 0.0, True, 0)
    assert isinstance(pool, ServerPool)
    for server in pool.servers:  # a 500 is not asked again, so that counts are exact
        server.async_client = server.async_client.with_options(max_retries=0)
    return pool


def test_each_question_stays_on_one_server_and_questions_are_spread():
    with doubles([("a", [1], "length")], [("b", [2], "length")]) as (first, second):
        pool = pool_of([first, second])
        one, two = pool.prompt("What is 1 + 1?"), pool.prompt("What is 2 + 2?")
        assert pool.prompt("What is 1 + 1?") == one and pool.placed == [1, 1]
        branches = [GenerationRequest(one, 4, seed=s) for s in range(3)]
        branches += [GenerationRequest(two + (9,) * s, 4, seed=s) for s in range(3)]
        out = pool.generate(branches)
        assert [g.token_ids for g in out] == [(1,)] * 3 + [(2,)] * 3
        assert [tuple(r["prompt"][: len(one)]) for r in first.requests] == [one] * 3
        assert [tuple(r["prompt"][: len(two)]) for r in second.requests] == [two] * 3
        continued = pool.generate([GenerationRequest(two + (2, 7, 7), 4, seed=0)])
        assert continued[0].token_ids == (2,) and len(second.requests) == 4  # its server again
        assert pool.stats.requests == 7 and pool.stats.generated_tokens == 7
        assert pool.stats.calls == 2 and pool.stats.batch_sizes == [6, 1]
        pool.close()


def test_a_failing_server_fails_only_its_own_requests():
    with doubles([("a", [1], "length")], ["error"]) as (healthy, broken):
        pool = pool_of([healthy, broken])
        one, two = pool.prompt("What is 1 + 1?"), pool.prompt("What is 2 + 2?")
        with pytest.raises(BatchFailure) as failed:
            pool.generate([GenerationRequest(one, 4, seed=0), GenerationRequest(two, 4, seed=0)])
        assert list(failed.value.failures) == [1] and "engine died" in str(failed.value)
        assert failed.value.partial[0].token_ids == (1,)
        with pytest.raises(BackendError, match="engine died"):  # alone: its own error
            pool.generate([GenerationRequest(two, 4, seed=0)])
        pool.close()


def test_servers_of_different_models_are_refused():
    with doubles([("a", [1], "length")], [("b", [2], "length")]) as servers:
        pool = pool_of(servers)
        pool.servers[1].model = "another"
        with pytest.raises(BackendError, match="different models"):
            ServerPool(pool.servers)
        pool.close()


def test_new_questions_avoid_a_server_whose_requests_all_failed():
    """A server that failed every request it got is given no new question while it rests;
    the question already placed on it still goes there (its prefix lives there)."""
    with doubles([("a", [1], "length")], ["error"]) as (healthy, broken):
        pool = pool_of([healthy, broken])
        pool.prompt("What is 1 + 1?")
        two = pool.prompt("What is 2 + 2?")  # placed on the broken one
        with pytest.raises(BackendError):
            pool.generate([GenerationRequest(two, 4, seed=0)])
        later = [pool.prompt(f"What is {n} + {n}?") for n in range(3, 7)]
        assert pool.placed == [5, 1]
        out = pool.generate([GenerationRequest(p, 4, seed=0) for p in later])
        assert [g.token_ids for g in out] == [(1,)] * 4 and len(broken.requests) == 1
        pool.close()


def test_servers_that_tokenize_differently_are_refused():
    """A prompt made by one server is continued, as token ids, by another: a pool whose
    servers disagree on a text's tokens is refused, naming them."""
    with doubles([("a", [1], "length")], [("b", [2], "length")]) as (first, second):
        second.tokens_of = lambda text: list(text.encode("utf-16-le"))[:64]
        with pytest.raises(BackendError, match="tokenize differently") as refused:
            pool_of([first, second])
        assert first.url in str(refused.value) and second.url in str(refused.value)
