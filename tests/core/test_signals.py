"""Per-interval signals in stores: the optional schema field, what replay reveals and when,
the helpers controllers use, and the refusal of controllers that need a missing signal."""

import json
import re

import numpy as np
import pytest
from conftest import signal_store

import autotts
from autotts import Branch, Continue, Controller, Prune, Read
from autotts.core.signals import (
    MissingSignal,
    group_confidences,
    interval_means,
    lowest_group_confidence,
    percentile,
    token_confidence,
)
from autotts.envs.replay import ReplayEnvironment
from autotts.envs.stores import StoreError, load_records


def test_stores_without_signals_stay_valid_and_have_none(env_dir):
    env = autotts.make("Qwen3-0.6B/aime24", env_dir)
    assert env.signal_names == frozenset()
    assert all(q.signals is None for q in env.questions)


@pytest.mark.parametrize(
    ("signals", "message"),
    [
        ({"confidence": [[1.0, 2.0]]}, "question 0"),  # one branch of two
        ({"confidence": [[1.0], [1.0, 2.0]]}, "signals.confidence[0] has 1 values"),
        ({"Bad-Name": [[1.0, 2.0], [1.0, 2.0]]}, "signals"),
        ({"confidence": [[1.0, "x"], [1.0, 2.0]]}, "signals"),
    ],
)
def test_malformed_signals_name_question_and_field(tmp_path, signals, message):
    path = tmp_path / "T" / "s.json"
    path.parent.mkdir(parents=True)
    record = {
        "question": "q",
        "gold_answer": "A",
        "probe_freq": 500,
        "each_branch": [[["A"], 700, "A"], [["B"], 600, "B"]],
        "signals": signals,
    }
    path.write_text(json.dumps([record]))
    with pytest.raises(StoreError, match=re.escape(message)) as info:
        load_records(path)
    assert str(path) in str(info.value) and "question 0" in str(info.value)


class Watcher(Controller):
    """Records what ``state.signals`` shows after every action."""

    name = "watcher"
    seen: list = []

    @staticmethod
    def schedule(beta):
        return {}

    def run(self, state):
        snap = type(self).seen
        snap.clear()

        def look():
            snap.append([list(v) for v in state.signals["confidence"]])

        yield Branch(2, probe=False)
        look()
        yield Continue([0, 1], steps=2)
        look()
        yield Prune([1])
        yield Continue([0], probe=False)
        look()
        yield Read(1)
        look()
        return "A"


def test_replay_reveals_a_value_per_generated_interval_and_nothing_ahead(tmp_path):
    branches = [[["A"] * 4, 2200, "A"], [["B"] * 4, 2100, "B"], [["C"], 600, "C"]]
    conf = [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12]]
    path = signal_store(tmp_path / "T" / "s.json", branches, {"confidence": conf}, seed=3)
    env = ReplayEnvironment("T/s", load_records(path))
    assert env.signal_names == {"confidence"}
    result = env.run_episode(Watcher(), {}, 0, 3)
    assert result.error is None, result.error
    assert Watcher.seen == [
        [[1], [6]],  # Branch(probe=False): the first interval's value, no probe needed
        [[1, 2, 3], [6, 7, 8]],  # two more intervals each
        [[1, 2, 3, 4], [6, 7, 8]],  # branch 1 pruned: frozen
        [[1, 2, 3, 4], [6, 7, 8], [11, 12]],  # Read: the whole branch
    ]


def test_a_finishing_extension_reveals_the_rest(tmp_path):
    branches = [[["A"], 700, "A"]]
    path = signal_store(tmp_path / "T" / "f.json", branches, {"confidence": [[0.5, None]]})
    env = ReplayEnvironment("T/f", load_records(path))

    class Finish(Controller):
        name = "finish"

        @staticmethod
        def schedule(beta):
            return {}

        def run(self, state):
            yield Branch(1)
            yield Continue([0], steps=5)
            return repr(state.signals["confidence"])

    assert env.run_episode(Finish(), {}, 0, 0).answer == "[[0.5, None]]"


def test_helpers_match_deepconf_definitions():
    assert token_confidence([-0.1, -2.0, -0.5], k=2) == pytest.approx(0.3)  # top-2: -0.1, -0.5
    assert interval_means([1, 2, 3, 4, 5], 2, 3) == [1.5, 3.5, 5.0]
    assert interval_means([1, 2], 2, 2) == [1.5, None]
    assert group_confidences([1.0, 3.0, None, 2.0], 2) == [2.0, 2.5]
    assert group_confidences([1.0, 3.0], 4) == [2.0]  # shorter than a window: the mean of all
    assert lowest_group_confidence([4.0, 1.0, 1.0, 4.0], 2) == 1.0
    assert lowest_group_confidence([None], 2) is None
    rng = np.random.default_rng(0)
    for q in (0, 10, 33.3, 90, 100):
        xs = rng.normal(size=7).tolist()
        assert percentile(xs, q) == pytest.approx(np.percentile(xs, q))


def test_controllers_requiring_a_missing_signal_are_refused_up_front(env_dir):
    with pytest.raises(MissingSignal, match="Qwen3-0.6B/aime24 does not have"):
        autotts.evaluate("deepconf", "Qwen3-0.6B/aime24", env_dir=env_dir, seeds=1, betas=[0])
    with pytest.raises(MissingSignal, match="deepconf needs the signal"):
        autotts.check("deepconf", "Qwen3-0.6B/aime24", env_dir=env_dir, questions=1, seeds=1)
    # run directly, the controller itself says why
    env = autotts.make("Qwen3-0.6B/aime24", env_dir)
    deepconf = autotts.load_controller("deepconf")
    result = env.run_episode(deepconf, deepconf.params(0.0), 0, 0)
    assert "needs per-interval confidence" in result.error


def test_presets_leave_out_controllers_whose_signal_is_missing(env_dir, tmp_path):
    from autotts.loading.run_configs import BASELINES_PRESET, parse_spec, without_missing_signals

    configs = [c for spec in BASELINES_PRESET for c in parse_spec(spec)]
    shipped = autotts.make("Qwen3-0.6B/aime24", env_dir)
    kept, notes = without_missing_signals(configs, [shipped])
    assert {c.name for c in configs} - {c.name for c in kept} == {"deepconf"}
    assert len(notes) == 1 and "deepconf left out" in notes[0] and "confidence" in notes[0]
    branches = [[["A"], 700, "A"], [["B"], 600, "B"]]
    path = signal_store(tmp_path / "T" / "c.json", branches, {"confidence": [[1, 2], [3, 4]]})
    with_confidence = ReplayEnvironment("T/c", load_records(path))
    assert without_missing_signals(configs, [with_confidence]) == (configs, [])
    assert len(without_missing_signals(configs, [with_confidence, shipped])[0]) == len(kept)
