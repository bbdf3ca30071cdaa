"""The reply's action strings: the compiled encoder and replayer agree with their Python
specification on every log, and on every string, however malformed."""

import pytest
from conftest import Scripted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autotts import Branch, Continue, Note, Probe, Prune, Read
from autotts.sandbox import protocol

compiled = pytest.mark.skipif(
    protocol._compiled_replay is None, reason="the compiled replay loop is not built"
)


@pytest.fixture
def toy(toy_env):
    return toy_env


ids = st.lists(st.integers(0, 5), max_size=4)
steps = st.one_of(st.integers(1, 4), st.lists(st.integers(1, 3), min_size=1, max_size=4))
action = st.one_of(
    st.builds(Continue, ids, steps, st.booleans()),
    st.builds(Branch, st.integers(0, 3), st.booleans(), st.sampled_from([None, None, "Toy"])),
    st.builds(Read, st.integers(0, 2), st.sampled_from([None, "Toy"])),
    st.builds(Probe, ids),
    st.builds(Prune, ids),
    st.builds(Note, st.text(max_size=5)),
)


def fast_and_spec(env, question, seed, text, wide=False, max_steps=100):
    source = env.episode_source(question, seed)
    _, order, probe_cost, limit, _ = source[1:]
    fast = protocol._compiled_replay(
        order[1], order[2], source[1].delta, probe_cost, len(order[1]), text, wide, max_steps
    )
    episode = source[0](*source[1:])
    try:
        steps, _ = protocol.replay_actions(episode, text, wide, keep_log=False)
        spec = (episode.tokens, episode.probe_tokens, len(episode.live), steps)
    except protocol.ProtocolError:
        spec = None
    return fast, spec


@compiled
@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=st.lists(action, max_size=10), seed=st.integers(0, 5))
def test_encoder_and_replayer_match_the_specification(toy, actions, seed):
    result = toy.run_episode(Scripted(actions), {}, 0, seed)
    text = protocol.encode_actions(result.actions, wide=False)
    fast_text = protocol._compiled_encode(result.actions, False)
    assert fast_text is None or fast_text == text
    fast, spec = fast_and_spec(toy, 0, seed, text)
    # an honest log always replays, to exactly what the episode spent
    assert spec == (result.tokens, result.probe_tokens, result.opened, len(result.actions))
    assert fast is None or fast == spec
    wide = protocol.encode_actions(result.actions, wide=True)
    assert protocol._compiled_encode(result.actions, True) in (None, wide)
    assert fast_and_spec(toy, 0, seed, wide, wide=True)[1] == spec


ALPHABET = "cbBrRpxn01234569af:;[],"


@compiled
@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(alphabet=ALPHABET, max_size=40), seed=st.integers(0, 3))
def test_any_string_is_refused_or_replayed_the_same_by_both(toy, text, seed):
    fast, spec = fast_and_spec(toy, 0, seed, text)
    if spec is None:
        assert fast is None
    else:
        assert fast in (None, spec)


def test_malformed_entries_are_refused(toy):
    for text in ["c1:00", "c11:0", "c10:00", "c1[1,]:00", "b1", "q", "c11:00;", ";b11", "p00",
                 "c1" + "9" * 8 + ":00", "B11:zz", "nzz", "b11;c12:01"]:  # fmt: skip
        fast, spec = fast_and_spec(toy, 0, 0, text)
        assert spec is None and fast is None, text


def test_too_many_actions_are_refused(toy):
    fast, spec = fast_and_spec(toy, 0, 0, ";".join(["b10"] * 3), max_steps=2)
    assert fast is None
