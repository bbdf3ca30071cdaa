"""The reply's action strings: the compiled encoder and replayer agree with their Python
specification on every log, and on every string, however malformed."""

import pytest
from conftest import Scripted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autotts import Branch, Continue, Note, Probe, Prune, Read
from autotts.sandbox import protocol

compiled = pytest.mark.skipif(
    protocol._compiled_decode is None, reason="the compiled replay loop is not built"
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


def decode_both(env, question, seed, payload, wide=False, max_steps=100):
    """The compiled decoder's result (None: left to the specification) and the
    specification's (None: refused), each as a tuple of the episode's numbers and its action
    log."""
    source = env.episode_source(question, seed)
    _, order, probe_cost, limit, _ = source[1:]
    fast = protocol._compiled_decode(
        payload, order[1], order[2], source[1].delta, probe_cost, len(order[1]), wide,
        max_steps, protocol.MAX_ANSWER_CHARS, protocol.MAX_TEXT_CHARS, True,
    )  # fmt: skip
    try:
        r = protocol.decode_unit_python(
            payload, source, question, seed, max_steps=max_steps, wide=wide, keep_log=True
        )
        spec = (r.answer, r.error, r.reason, r.tokens, r.probe_tokens, r.opened, r.steps)
        spec += (r.actions,)
    except protocol.ProtocolError:
        spec = None
    return fast, spec


def fast_and_spec(env, question, seed, text, wide=False, max_steps=100):
    """``decode_both`` on a well-formed unit with the action string ``text``; the numbers
    only."""
    payload = b"3432\t-\t-\t" + text.encode()
    fast, spec = decode_both(env, question, seed, payload, wide, max_steps)
    return fast and fast[3:7], spec and spec[3:7]


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
    full, _ = decode_both(toy, 0, seed, b"34\t-\t-\t" + text.encode())
    # the compiled log is the episode's own, entry for entry
    assert full is None or full[7] == result.actions
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


HEXISH = st.sampled_from(["-", "", "34", "3432", "4A", "e282ac", "ff", "3", "2d", "34 32", "c3"])


@compiled
@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fields=st.lists(HEXISH, min_size=0, max_size=4),
    actions=st.text(alphabet=ALPHABET + "\té", max_size=12),
    seed=st.integers(0, 3),
)
def test_any_unit_line_is_refused_or_decoded_the_same_by_both(toy, fields, actions, seed):
    payload = "\t".join([*fields, actions]).encode()
    fast, spec = decode_both(toy, 0, seed, payload)
    if spec is None:
        assert fast is None
        with pytest.raises(protocol.ProtocolError):
            protocol.UnitDecoder(toy, max_steps=100, wide=False)(payload, 0, seed, True)
    else:
        assert fast in (None, spec)
        decoder = protocol.UnitDecoder(toy, max_steps=100, wide=False)
        assert decoder(payload, 0, seed, keep_log=False).tokens == spec[3]


@compiled
def test_long_texts_are_left_to_the_specification(toy):
    over = ("61" * (protocol.MAX_ANSWER_CHARS + 1)).encode()
    fast, spec = decode_both(toy, 0, 0, over + b"\t-\t-\tb11")
    assert fast is None and spec is None
    euro = ("e282ac" * protocol.MAX_ANSWER_CHARS).encode()  # 1000 characters, 3000 bytes
    fast, spec = decode_both(toy, 0, 0, euro + b"\t-\t" + euro + b"\tb11")
    assert fast == spec and fast[0] == "€" * protocol.MAX_ANSWER_CHARS
