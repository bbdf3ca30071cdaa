"""The sandbox protocol without processes: a worker's episodes played against the parent's
engine over an in-memory channel equal the trusted evaluator's, episode by episode and trace
by trace; the compiled hot paths agree with their Python specification on every input,
malformed frames included."""

import marshal
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autotts import Branch, Continue, Note, Probe, Prune, Read
from autotts.core.contract import ChargeAgain
from autotts.envs.replay import ReplayEnvironment
from autotts.envs.stores import load_environment_records
from autotts.loading.controller_files import load_controller
from autotts.sandbox import observations, protocol, remote
from autotts.sandbox.remote import header_of, play_remote
from autotts.sandbox.serving import EpisodeServer

compiled = pytest.mark.skipif(
    protocol._compiled_decode is None, reason="the compiled protocol is not built"
)


@pytest.fixture(params=["compiled-rounds", "python-rounds"])
def round_loop(request, monkeypatch):
    """The worker's round loop: compiled (``_mirror.step_group``) or its specification."""
    if request.param == "python-rounds":
        monkeypatch.setattr(remote, "step_group", None)
    elif remote.step_group is None:
        pytest.skip("the compiled round loop is not built")
    return request.param


class Loopback:
    """The parent's engine behind an in-memory channel (answers in the order asked)."""

    def __init__(self, server):
        self.server, self.replies = server, deque()

    def send(self, payload: bytes) -> None:
        self.replies.append(marshal.dumps(self.server.serve(payload)))

    def receive(self):
        return self.replies.popleft()


def play_both(controller, env, configs, seeds, in_flight=7, traced=True, compiled=False):
    """(results through the protocol, results of the trusted evaluator), unit by unit; the
    parent plays the units on its compiled engine or (``compiled=False``) on the store's
    Python engine, keeping their action logs where ``traced``."""
    params = [controller.params(beta) for beta in configs]
    units = [(c, q, s) for q in range(len(env)) for c in range(len(configs)) for s in range(seeds)]
    results = {}
    server = EpisodeServer(
        [(env, q, s) for _, q, s in units], in_flight, 20_000, lambda n: traced,
        lambda n, result: results.__setitem__(n, result), compiled=compiled,
    )  # fmt: skip
    headers = []
    for q in range(len(env)):
        source = env.episode_source(q, 0)
        headers.append(header_of(source[0](*source[1:]).state))
    play_remote(controller, params, headers, [(c, q) for c, q, _ in units], in_flight,
                Loopback(server))  # fmt: skip
    trusted = [env.run_episode(controller, params[c], q, s) for c, q, s in units]
    return [results[n] for n in range(len(units))], trusted


@pytest.fixture(scope="module")
def env(env_dir):
    records = load_environment_records("Qwen3-4B/aime25", env_dir)[:4]
    return ReplayEnvironment("Qwen3-4B/aime25", records)


# (traced, compiled): where the parent plays the episodes, and whether it keeps their logs
ENGINES = {
    "python-engine": (True, False),
    "compiled": (False, True),
    "compiled-traced": (True, True),
}


@pytest.mark.parametrize(
    "name", ["cmc", "sc", "asc", "esc", "parallel_probe", "dynasor_cot", "ffs", "short_m_at_k"]
)
@pytest.mark.parametrize("traced,compiled", ENGINES.values(), ids=ENGINES)
def test_the_protocol_plays_what_the_trusted_evaluator_plays(
    name, traced, compiled, env, round_loop
):
    controller = load_controller(name)
    remote, trusted = play_both(
        controller, env, [0.0, 0.5, 1.0], 3, traced=traced, compiled=compiled
    )
    for mine, theirs in zip(remote, trusted, strict=True):
        if traced:
            assert mine.actions == theirs.actions and mine.trace == theirs.trace
        else:
            theirs.actions = None  # an untraced episode keeps no log
        assert mine == theirs


ids = st.lists(st.integers(-2, 9), max_size=5)
steps = st.one_of(st.integers(0, 4), st.lists(st.integers(0, 3), min_size=0, max_size=5))
any_action = st.one_of(
    st.builds(Continue, ids, steps, st.booleans()),
    st.builds(Branch, st.integers(-1, 4), st.booleans(), st.sampled_from([None, None, "nope"])),
    st.builds(Read, st.integers(-1, 3), st.sampled_from([None, "Qwen3-4B"])),
    st.builds(Probe, ids),
    st.builds(Prune, ids),
    st.builds(ChargeAgain, st.integers(-1, 6)),
    st.builds(Note, st.text(max_size=5)),
)


class Script:
    """Yields a fixed list of actions, whatever the replies, and records what it saw."""

    name = "script"
    requires = ()

    def __init__(self, actions):
        self.actions = actions

    def params(self, beta=None):
        return {}

    def run(self, state):
        for action in self.actions:  # noqa: UP028 (replies are sent in: not `yield from`)
            yield action
        return f"{state.tokens}:{state.depth}:{state.finished}:{state.history}:{state.finals}"


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(any_action, max_size=12), st.integers(0, 3), st.sampled_from(list(ENGINES)))
def test_any_action_sequence_observes_what_it_would_in_process(
    env, round_loop, actions, seed, engine
):
    """Every state a controller can reach (errors included) is the same through the protocol
    as in process, on the parent's Python and compiled engines, and so is the action log:
    the script's answer prints its whole final state."""
    traced, compiled = ENGINES[engine]
    remote, trusted = play_both(
        Script(actions), env, [None], seed + 1, traced=traced, compiled=compiled
    )
    for mine, theirs in zip(remote, trusted, strict=True):
        assert (mine.answer, mine.error, mine.tokens, mine.steps, mine.opened) == (
            theirs.answer, theirs.error, theirs.tokens, theirs.steps, theirs.opened,
        )  # fmt: skip
        if traced:
            assert mine.actions == theirs.actions


def encoded(actions):
    return b"".join(protocol.encode_action(a)[0] for a in actions)


@compiled
@given(st.lists(any_action, max_size=8))
def test_the_compiled_decoder_agrees_with_the_specification(actions):
    actions = [a for a in actions if _encodable(a)]
    data = encoded(actions) + protocol.answer_entry("7", "why") + protocol.failure_entry("boom")
    fast = protocol.decode_round(data, len(actions) + 2)
    spec = protocol.decode_round_python(data, len(actions) + 2)
    assert [repr(a) for a in fast] == [repr(a) for a in spec]


def _encodable(action) -> bool:
    try:
        protocol.encode_action(action)
    except Exception:
        return False
    return True


@compiled
@given(st.binary(max_size=60), st.integers(0, 4))
def test_malformed_rounds_are_refused_alike(data, n):
    """The compiled decoder declines what the specification refuses, on any bytes."""
    try:
        spec = protocol.decode_round_python(data, n)
    except protocol.ProtocolError:
        spec = None
    fast = protocol._compiled_decode(
        data, n, Continue, Branch, Read, Probe, Prune, ChargeAgain, Note, protocol.Generate,
        protocol.MAX_ANSWER_CHARS, protocol.MAX_TEXT_CHARS, protocol.MAX_PROMPT_CHARS,
        protocol.MAX_IDS,
    )  # fmt: skip
    if spec is None:
        assert fast is None
    elif fast is not None:
        assert [repr(a) for a in fast] == [repr(a) for a in spec]


@compiled
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=6))
def test_compiled_ids_and_picks_agree(values):
    from autotts.sandbox import _wire

    assert _wire.encode_ids(values) == protocol.encode_ids_python(values)
    table = [f"a{i}" for i in range(10)]
    picked = tuple(v % 10 for v in values)
    assert _wire.pick(table, picked) == observations.pick_python(table, picked)


@pytest.mark.parametrize(
    "bad",
    [True, 2**70, "3"],
    ids=["bool", "too-big", "str"],
)
def test_ids_the_engine_would_refuse_are_refused_before_they_cross(bad):
    from autotts.core.contract import ActionError

    with pytest.raises(ActionError):
        protocol.encode_action(Continue([0, bad]))


class AcrossModels:
    """Opens branches of each model in turn, extends and reads them (cross-model)."""

    name = "across-models"
    requires = ()

    def params(self, beta=None):
        return {}

    def run(self, state):
        for model in state.models:
            yield Branch(2, model=model)
        yield Read(1, model=state.models[-1])
        while state.active():
            yield Continue(state.active()[:3], steps=2, probe=len(state.finals) % 2 == 0)
        return f"{state.cost:.6g}:{state.model}:{state.finals}"


def test_cross_model_episodes_play_alike(env_dir, round_loop):
    from autotts.envs.cross_model import CrossModelEnvironment

    env = CrossModelEnvironment.load("aime24", ["Qwen3-0.6B", "Qwen3-8B"], env_dir)
    env.questions = env.questions[:3]
    remote, trusted = play_both(AcrossModels(), env, [None], 2)
    for mine, theirs in zip(remote, trusted, strict=True):
        assert mine == theirs and mine.cost == theirs.cost and mine.answer.count(":") == 2
        assert mine.trace == theirs.trace


MUTATIONS = {
    "clear depth": lambda s: s.depth.clear(),
    "history entry a tuple": lambda s: s.history and s.history.__setitem__(0, ()),
    "depth a tuple": lambda s: setattr(s, "depth", tuple(s.depth)),
    "an extra answer": lambda s: s.answer.append("x"),
    "one finished less": lambda s: s.finished and s.finished.pop(),
    "a signal": lambda s: s.signals.__setitem__("x", [[] for _ in s.depth]),
    "no models": lambda s: setattr(s, "models", ()),
    "depth a list subclass": lambda s: setattr(s, "depth", type("L", (list,), {})(s.depth)),
    "one depth less": lambda s: s.depth and s.depth.pop(),
    "history entries deques": lambda s: s.history.__setitem__(
        slice(None), [deque(h) for h in s.history]
    ),
    "a finished flag that clears depth": lambda s: (
        s.finished and s.finished.__setitem__(0, ClearsWhenTested(s.depth))
    ),
}


class ClearsWhenTested:
    """A false flag that empties a list when its truth is taken (Python code run in the
    middle of the round loop's writes)."""

    def __init__(self, victim: list):
        self.victim = victim

    def __bool__(self) -> bool:
        self.victim.clear()
        return False


class Mutator(Script):
    """A script that changes its (read-only) mirror before one of its actions."""

    def __init__(self, actions, at, mutation):
        super().__init__(actions)
        self.at, self.mutation = at, mutation

    def run(self, state):
        for n, action in enumerate(self.actions):
            if n == self.at:
                MUTATIONS[self.mutation](state)
            yield action
        return f"{state.tokens}:{state.depth}:{state.history}:{state.finals}:{state.model}"


def _both_round_loops(monkeypatch, controller, env) -> list:
    outcomes = []
    for step_group in (remote.step_group, None):
        monkeypatch.setattr(remote, "step_group", step_group)
        mine, _ = play_both(controller, env, [None], 2, traced=False, compiled=True)
        outcomes.append([(r.answer, r.error, r.tokens, r.steps, r.opened) for r in mine])
    return outcomes


@pytest.mark.skipif(remote.step_group is None, reason="the compiled round loop is not built")
@pytest.mark.parametrize(
    "actions, mutation",
    [
        ([Read(1), Probe([0])], "one depth less"),
        ([Branch(2), Probe([0, 1])], "a finished flag that clears depth"),
        ([Branch(2), Continue([0, 1]), Probe([0])], "history entries deques"),
    ],
    ids=["probe-of-a-finished-branch", "python-code-mid-write", "history-deques"],
)
def test_changes_the_specification_tolerates_are_tolerated(env, monkeypatch, actions, mutation):
    """Where the specification never reads what the controller changed (a finished branch's
    depth, a history entry that still has ``append``), the compiled loop does not fail it
    either; Python code run in the middle of its writes cannot crash it."""
    compiled, spec = _both_round_loops(monkeypatch, Mutator(actions, 1, mutation), env)
    assert compiled == spec


@pytest.mark.skipif(remote.step_group is None, reason="the compiled round loop is not built")
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(any_action, min_size=1, max_size=8),
    st.integers(0, 7),
    st.sampled_from(sorted(MUTATIONS)),
)
def test_a_changed_mirror_fails_alike_in_both_round_loops(env, monkeypatch, actions, at, mutation):
    """A controller that changes its state sees the same thing (the same failure, or the same
    state where the change is harmless) from the compiled round loop as from its
    specification."""
    compiled, spec = _both_round_loops(monkeypatch, Mutator(actions, at, mutation), env)
    assert compiled == spec


def test_compiled_sandbox_paths_are_built():
    """CI sets AUTOTTS_REQUIRE_COMPILED=1: there both sides' compiled loops must be built."""
    import os

    from autotts.sandbox import compiled_engine

    if not os.environ.get("AUTOTTS_REQUIRE_COMPILED"):
        pytest.skip("set AUTOTTS_REQUIRE_COMPILED=1 to require the compiled sandbox paths")
    assert remote.step_group is not None and compiled_engine._act_round is not None
    assert protocol._compiled_decode is not None and compiled_engine.ReplayCore is not None
