"""The engine refuses hostile action arguments identically in both replay loops.

Property-based: random and adversarial action sequences (bools and int subclasses where ints
belong, huge and negative numbers, wrong lengths, strings, repeated and unopened ids) run
through the compiled loop and the pure-Python specification; every observable outcome must
agree, and no accepted episode may cost less than the tokens its actions generate.
"""

import pytest
from conftest import Scripted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autotts import Branch, Continue, Note, Probe, Prune, Read
from autotts.core.engine import MAX_STEPS_PER_ACTION
from autotts.envs import replay


class Lying(int):
    """An int whose arithmetic and comparisons lie (the refund-inflation attack)."""

    def __mul__(self, other):
        return -(10**9)

    __rmul__ = __mul__

    def __sub__(self, other):
        return -(10**9)

    def __lt__(self, other):
        return False

    def __ge__(self, other):
        return True


HOSTILE_INTS = [
    True,
    False,
    Lying(1),
    2**62,
    -(2**62),
    2**80,
    MAX_STEPS_PER_ACTION + 1,
    1.0,
    "1",
    None,
]
small = st.integers(-2, 6)
an_int = st.one_of(small, small, small, st.sampled_from(HOSTILE_INTS))
ids = st.one_of(st.lists(an_int, max_size=5), st.sampled_from(["01", None, 3]))
steps = st.one_of(
    st.integers(-1, 4),
    st.sampled_from(HOSTILE_INTS),
    st.lists(an_int, max_size=5),
    st.just(MAX_STEPS_PER_ACTION),
)
probe = st.sampled_from([True, False, True, 1, 0, None, "yes"])
model = st.sampled_from([None, None, "Toy", "other", 7])
action = st.one_of(
    st.builds(Continue, ids, steps, probe),
    st.builds(Branch, an_int, probe, model),
    st.builds(Read, an_int, model),
    st.builds(Probe, ids),
    st.builds(Prune, ids),
    st.builds(Note, st.sampled_from(["why", 5])),
    st.sampled_from(["continue", None, 3]),
)


@pytest.fixture
def toy(toy_env):
    return toy_env


def outcome(env, actions, seed):
    result = env.run_episode(Scripted(list(actions)), {}, 0, seed)
    return (
        result.answer,
        result.tokens,
        result.probe_tokens,
        result.opened,
        result.steps,
        result.error,
        result.trace,
    )


@settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=st.lists(action, max_size=8), seed=st.integers(0, 3))
def test_both_loops_agree_on_any_action_sequence(toy, actions, seed):
    if replay._compiled_advance is None:
        pytest.skip("the compiled replay loop is not built")
    compiled = outcome(toy, actions, seed)
    saved, replay._compiled_advance = replay._compiled_advance, None
    try:
        python = outcome(toy, actions, seed)
    finally:
        replay._compiled_advance = saved
    assert compiled == python
    answer, tokens, probe_tokens, opened, *_ = compiled
    assert tokens >= 0 and probe_tokens >= 0 and opened <= 6
    # every accepted step was paid for: the cost equals a fresh replay of the action log
    result = toy.run_episode(Scripted(list(actions)), {}, 0, seed)
    assert result.trace is None or tokens == (result.trace[-1][4] if result.trace else 0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (Continue([0], steps=2**62), "steps must be an int in 1..1,000,000"),
        (Continue([0], steps=Lying(1)), "steps must be an int >= 1"),
        (Continue([0], steps=[Lying(1)]), "steps must be ints in 1..1,000,000"),
        (Continue([Lying(0)]), "branch ids must be ints"),
        (Continue([True]), "branch ids must be ints"),
        (Continue([0], probe=1), "probe must be True or False"),
        (Branch(Lying(1)), "branch count must be a non-negative int"),
        (Probe([False]), "branch ids must be ints"),
        (Prune([Lying(0)]), "branch ids must be ints"),
        (Branch(1, model=7), "model must be None or a model name"),
    ],
)
def test_hostile_arguments_get_a_clear_error(toy, bad, message):
    result = toy.run_episode(Scripted([Branch(1), bad]), {}, 0, 0)
    assert result.error and message in result.error, result.error
    assert result.tokens == toy.run_episode(Scripted([Branch(1)]), {}, 0, 0).tokens


def test_the_loops_share_the_steps_bound():
    if replay._compiled_advance is None:
        pytest.skip("the compiled replay loop is not built")
    from autotts.envs import _replay_loop

    assert _replay_loop.MAX_STEPS_PER_ACTION == MAX_STEPS_PER_ACTION
