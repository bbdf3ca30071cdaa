import random

import pytest
from conftest import Scripted, fixture_controller, tiny_store

from autotts import Branch, Continue, Controller, Note, Probe, Prune, Read
from autotts.envs.replay import ReplayEnvironment, branch_order
from autotts.envs.stores import load_records
from autotts.loading.controller_files import load_controller


@pytest.fixture
def toy(tmp_path):
    # branch 0: three probes, 1700 tokens -> finishing extension costs 200
    # branch 1: two probes, 900 tokens -> finishing extension costs max(0, 900 - 1000) = 0
    path = tiny_store(
        tmp_path / "Toy" / "t.json",
        [
            [["1", "2", "3"], 1700, "3"],
            [["5", "5"], 900, "5"],
            [["SECRET-PROBE"], 800, "SECRET-FINAL"],
        ],
        gold="GOLD-SECRET",
    )
    return ReplayEnvironment("Toy/t", load_records(path))


def seed_where_first_two_are(env, first, second):
    return next(s for s in range(1000) if branch_order(s, 3)[:2] == (first, second))


def test_branch_order_is_the_reference_shuffle():
    order = list(range(128))
    random.Random(5).shuffle(order)
    assert branch_order(5, 128) == tuple(order)


def test_cost_convention_extension_and_finish(toy):
    seed = seed_where_first_two_are(toy, 0, 1)
    c = Scripted([Branch(2), Continue([0, 1]), Continue([0, 1]), Continue([0], steps=5)])
    r = toy.run_episode(c, {}, 0, seed)
    assert r.error is None and r.answer == "7" and r.reason == "scripted"
    s = c.state
    assert c.replies[0] == [0, 1]
    # branch 0: 4 intervals (3 probes) + finish 200 ; branch 1: 2 intervals + finish 0
    assert s.finished == [True, True]
    assert s.history == [["1", "2", "3", "3"], ["5", "5", "5"]]
    assert s.depth == [4, 3]
    assert s.finals == ["5", "3"]
    assert r.tokens == 1500 + 200 + 1000 == s.tokens
    assert [step[0] for step in r.trace] == ["branch", "continue", "continue", "continue"]
    assert r.trace[2][3] == (1,)  # branch 1 finished on the third action


def test_read_costs_the_whole_branch_and_probe_is_free(toy):
    seed = seed_where_first_two_are(toy, 0, 1)
    c = Scripted([Read(1), Branch(1, probe=False), Probe([1]), Note("why")])
    r = toy.run_episode(c, {}, 0, seed)
    assert r.error is None
    assert r.tokens == 1700 + 500
    assert c.state.answer == ["3", "5"] and c.state.history[1] == ["5"]
    assert r.trace[-1][0] == "note" and r.trace[-1][2] == ("why",)


def test_probe_cost_is_counted_separately(tmp_path):
    path = tiny_store(tmp_path / "T" / "t.json", [[["1", "2"], 1100, "2"]])
    env = ReplayEnvironment("T/t", load_records(path), probe_cost=10)
    r = env.run_episode(Scripted([Branch(1), Continue([0], probe=False), Probe([0])]), {}, 0, 0)
    assert (r.tokens, r.probe_tokens) == (1000 + 20, 20)


def test_pruned_branch_cannot_be_continued(toy):
    r = toy.run_episode(Scripted([Branch(2), Prune([1]), Continue([0, 1])]), {}, 0, 0)
    assert r.answer is None and "branch 1 is pruned" in r.error


def test_invalid_ids_and_too_many_branches(toy):
    assert "never opened" in toy.run_episode(Scripted([Branch(1), Continue([5])]), {}, 0, 0).error
    assert "never opened" in toy.run_episode(Scripted([Branch(1), Continue([-1])]), {}, 0, 0).error
    assert "cannot open 4 more branches" in toy.run_episode(Scripted([Read(4)]), {}, 0, 0).error
    assert "expected an action" in toy.run_episode(Scripted(["continue"]), {}, 0, 0).error


def _reachable_strings(root, limit=10_000):
    """Every str reachable from ``root`` through data attributes (including private and
    slot attributes) and container items."""
    seen, found, stack = set(), set(), [root]
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            found.add(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif not isinstance(obj, int | float | bool | type(None) | type):
            for klass in type(obj).__mro__:
                for slot in getattr(klass, "__slots__", ()):
                    if hasattr(obj, slot):
                        stack.append(getattr(obj, slot))
            stack.extend(getattr(obj, "__dict__", {}).values())
    return found


def test_state_reveals_nothing_a_real_run_could_not_know(toy):
    seed = seed_where_first_two_are(toy, 0, 1)
    c = Scripted([Branch(2), Continue([0])])
    toy.run_episode(c, {}, 0, seed)
    strings = _reachable_strings(c.state)
    assert {"1", "2", "5"} <= strings
    assert not {"GOLD-SECRET", "SECRET-PROBE", "SECRET-FINAL", "3"} & strings
    assert not hasattr(c.state, "__dict__")


def test_misbehaving_controllers_give_clear_errors(env_dir):
    env = ReplayEnvironment.load("Qwen3-8B/aime24", env_dir, max_steps=500)
    cases = {
        "raises": "controller bug: ValueError: boom from the controller (at ",
        "returns_int": "controller returned int 42; it must return the answer as a str",
        "loops_forever": "step limit exceeded: 500 actions",
        "peeks_gold": "'EpisodeState' object has no attribute 'gold_answer'",
    }
    for name, message in cases.items():
        controller = load_controller(fixture_controller(name))
        result = env.run_episode(controller, {}, 0, 0)
        assert result.answer is None and message in result.error, (name, result.error)


def test_trace_records_every_action_with_revealed_answers(env_dir):
    env = ReplayEnvironment.load("Qwen3-8B/aime24", env_dir)
    cmc = load_controller("cmc")
    result = env.run_episode(cmc, cmc.params(0.5), 3, 7)
    assert result.error is None
    assert result.trace[0][0] == "branch" and len(result.trace[0][1]) == 5  # n_init at β=0.5
    tokens = [step[4] for step in result.trace]
    assert tokens == sorted(tokens) and tokens[-1] == result.tokens
    for action, ids, revealed, _, _ in result.trace:
        if action in ("branch", "continue"):
            assert len(ids) == len(revealed) and all(isinstance(a, str) for a in revealed)


class Recording(Controller):
    """Runs another controller and snapshots, after every action, what the state showed."""

    name = "recording"

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    @staticmethod
    def schedule(beta):
        return {}

    def run(self, state, **params):
        gen = self.inner.run(state, **params)
        reply = None
        try:
            while True:
                action = gen.send(reply)
                ids_before = len(state.depth)
                reply = yield action
                ids = reply if reply is not None else list(getattr(action, "ids", ()))
                answers = tuple(state.answer[i] for i in ids)
                self.seen.append((list(ids), answers, state.tokens, ids_before))
        except StopIteration as stop:
            return stop.value


def test_rebuilt_trace_shows_what_the_controller_saw(env_dir):
    env = ReplayEnvironment.load("Qwen3-8B/aime24", env_dir)
    cmc = load_controller("cmc")
    for question, seed in [(0, 0), (3, 7), (11, 42)]:
        recording = Recording(cmc)
        result = env.run_episode(recording, cmc.params(1.0), question, seed)
        assert result.error is None and len(result.trace) == len(recording.seen)
        for (action, ids, revealed, _, tokens), (seen_ids, answers, cost, _) in zip(
            result.trace, recording.seen, strict=True
        ):
            assert list(ids) == seen_ids and tokens == cost
            if action != "prune":
                assert revealed == answers


class Scripted2(Scripted):
    name = "scripted2"


MIXED_ACTIONS = [
    Branch(3),
    Continue([0, 1, 2], steps=[1, 2, 1]),
    Continue([2, 0], probe=False),
    Probe([0, 2]),
    Note("half way"),
    Continue([1], steps=9),
    Prune([2]),
    Read(1),
    Continue([0, 0]),
    Continue([0], steps=20),
]


@pytest.mark.parametrize("name", ["sc", "asc", "esc", "parallel-probe", "cmc", "mixed", "bad"])
def test_compiled_loop_matches_the_python_specification(env_dir, monkeypatch, name):
    from autotts.envs import replay

    if replay._compiled_advance is None:
        pytest.skip("the compiled replay loop is not built (no C compiler at install)")
    env = ReplayEnvironment.load("Qwen3-8B/aime24", env_dir)
    if name == "mixed":
        controller, params = Scripted(MIXED_ACTIONS), {}
    elif name == "bad":  # errors part-way: duplicates, a finished branch, bad steps
        controller = Scripted([Branch(2), Continue([0, 0, 0], steps=[30, 1, 1])])
        params = {}
    else:
        controller = load_controller(name)
        params = controller.params(0.7) if name == "cmc" else controller.params()

    def run_all():
        results = [
            env.run_episode(controller, params, q, s) for q in range(0, 30, 3) for s in range(5)
        ]
        return [
            (r.answer, r.tokens, r.probe_tokens, r.opened, r.steps, r.error, r.trace)
            for r in results
        ]

    compiled = run_all()
    monkeypatch.setattr(replay, "_compiled_advance", None)
    assert run_all() == compiled


def test_compiled_loop_is_built():
    """CI sets AUTOTTS_REQUIRE_COMPILED=1: there the C loop must have been built."""
    import os

    from autotts.envs import replay

    if not os.environ.get("AUTOTTS_REQUIRE_COMPILED"):
        pytest.skip("set AUTOTTS_REQUIRE_COMPILED=1 to require the compiled replay loop")
    assert replay._compiled_advance is not None


class Vandal(Controller):
    """Writes into the state it was told to treat as read-only, then continues branches."""

    name = "vandal"

    def __init__(self, how):
        self.how = how

    @staticmethod
    def schedule(beta):
        return {}

    def run(self, state):
        yield Branch(2)
        if self.how == "shrink":
            del state.depth[:]
        elif self.how == "history":
            state.history[0] = None
        elif self.how == "cheap":  # pretend branch 0 is deeper and nothing was spent
            state.depth[0] = 40
            state.tokens = state.probe_tokens = 0
        elif self.how == "limit":
            state.max_branches = 100
            state.depth[1] = "deep"
        yield Continue([0, 1], steps=3)
        yield Branch(1)
        return "x"


@pytest.mark.parametrize("how", ["shrink", "history"])
def test_a_controller_breaking_its_state_gets_an_error_not_a_crash(toy, how):
    result = toy.run_episode(Vandal(how), {}, 0, 0)
    assert result.answer is None and result.error, result


@pytest.mark.parametrize("how", ["cheap", "limit"])
def test_writing_into_the_state_changes_neither_cost_nor_limits(toy, how):
    honest = toy.run_episode(Vandal("none"), {}, 0, 0)
    vandal = toy.run_episode(Vandal(how), {}, 0, 0)
    assert (vandal.tokens, vandal.probe_tokens) == (honest.tokens, honest.probe_tokens)
    assert honest.answer == vandal.answer == "x" and vandal.opened == 3
    limited = ReplayEnvironment("Toy/t", [], branch_limit=2)
    limited.questions = toy.questions
    assert "cannot open 1 more branches" in limited.run_episode(Vandal(how), {}, 0, 0).error


def test_a_run_without_yield_and_engine_misuse_say_what_is_wrong(env_dir):
    from autotts import Branch, Controller

    class NoYield(Controller):
        name = "no-yield"

        @staticmethod
        def schedule(beta):
            return {}

        def run(self, state):
            return "42"

    class BadIds(NoYield):
        def run(self, state):
            yield Branch(1)
            yield Continue([7])  # never opened: the engine refuses the action
            return "1"

    env = ReplayEnvironment.load("Qwen3-8B/aime24", env_dir)
    error = env.run_episode(NoYield(), {}, 0, 0).error
    assert "NoYield.run() returned str '42' instead of a generator" in error
    assert "must yield actions" in error
    misuse = env.run_episode(BadIds(), {}, 0, 0).error
    assert misuse.startswith("invalid action: ") and "controller bug" not in misuse
