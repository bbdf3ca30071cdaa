"""The environment contract and registry: ids to environments, user types, and a new type
that offers controllers an extra per-interval signal, added in one place (the subclass and
its ``register`` call) plus its store reader."""

import json

import pytest

import autotts
from autotts import Continue, Controller, Environment
from autotts.envs.registry import _TYPES, make, register, registered_types, resolve_ids, shared
from autotts.envs.replay import ReplayEnvironment, _Episode
from autotts.envs.stores import load_records


# --- a user environment type: replay stores whose branches carry a per-interval confidence --
class _ConfidenceEpisode(_Episode):
    __slots__ = ("confidence",)

    def __init__(self, q, order, probe_cost, limit, model, confidence):
        super().__init__(q, order, probe_cost, limit, model)
        self.confidence = confidence
        self.state.signals["confidence"] = []

    def _publish(self) -> None:
        shown = self.state.signals["confidence"]
        shown.extend([] for _ in range(len(self.depth) - len(shown)))
        for i, depth in enumerate(self.depth):
            shown[i][:] = self.confidence[i][:depth]

    def open(self, k, model=None):
        ids = super().open(k, model)
        self._publish()
        return ids

    def extend(self, ids, k, probe):
        super().extend(ids, k, probe)
        self._publish()


class ConfidenceEnvironment(ReplayEnvironment):
    """Replay plus ``state.signals["confidence"][i]``: one value per generated interval."""

    def __init__(self, env_id, records, **kwargs):
        super().__init__(env_id, records, **kwargs)
        # the store reader: the extra per-branch field the store carries
        self.confidence = [r.model_extra["confidence"] for r in records]

    def episode_source(self, question, seed):
        cls, q, order, *rest = super().episode_source(question, seed)
        from autotts.envs.replay import branch_order

        picked = [self.confidence[question][i] for i in branch_order(seed, len(q.tokens))]
        return (_ConfidenceEpisode, q, order, *rest, picked)


def _confidence_store(env_dir, tmp_path, questions=3):
    """A small store: three real questions, each branch with a made-up confidence per
    interval (the share of its probes so far that agree with its final answer)."""
    records = json.loads((env_dir / "Qwen3-8B" / "aime24.json").read_text())[:questions]
    for record in records:
        record["confidence"] = [
            [sum(p == final for p in probes[: d + 1]) / (d + 1) for d in range(len(probes) + 1)]
            for probes, _, final in record["each_branch"]
        ]
    path = tmp_path / "confident" / "Qwen3-8B" / "aime24.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(records))
    return path


class StopWhenConfident(Controller):
    """Grows branches one interval at a time; stops as soon as some branch's confidence
    reaches ``threshold`` (reads the signal only where the environment offers it)."""

    name = "stop-when-confident"

    @staticmethod
    def schedule(beta):
        return {"threshold": 0.5 + 0.5 * beta}

    def run(self, state, threshold):
        yield autotts.Branch(4)
        while state.active():
            confidence = state.signals.get("confidence")
            if confidence:
                sure = [i for i, c in enumerate(confidence) if c and c[-1] >= threshold]
                if sure:
                    return state.answer[sure[0]]
            yield Continue(state.active())
        return autotts.majority(state.finals)[0]


@pytest.fixture
def confidence_type(env_dir, tmp_path):
    path = _confidence_store(env_dir, tmp_path)

    def factory(env_id, env_dir=None, **kwargs):
        inner = env_id.removeprefix("confidence:")
        return ConfidenceEnvironment(inner, load_records(path), **kwargs)

    register("confidence", factory)
    yield
    _TYPES.pop("confidence", None)


def test_ids_make_the_built_in_types(env_dir):
    single = make("Qwen3-8B/aime24", env_dir)
    cross = make("Qwen3-4B+Qwen3-8B/aime24", env_dir)
    assert isinstance(single, Environment) and type(single).__name__ == "ReplayEnvironment"
    assert type(cross).__name__ == "CrossModelEnvironment" and cross.models == (
        "Qwen3-4B",
        "Qwen3-8B",
    )
    assert shared("Qwen3-8B/aime24", env_dir) is shared("Qwen3-8B/aime24", env_dir)
    assert resolve_ids(["Qwen3-*/aime24", "Qwen3-8B/aime24"], env_dir)[-1] == "Qwen3-8B/aime24"
    assert len(resolve_ids(["Qwen3-*/aime24"], env_dir)) == 4


def test_bad_ids_say_what_ids_look_like(env_dir):
    with pytest.raises(autotts.BadInput, match="MODEL/DATASET"):
        make("no-slash", env_dir)
    with pytest.raises(autotts.BadInput, match="unknown environment 'Nope/aime24'"):
        make("Nope/aime24", env_dir)
    with pytest.raises(autotts.BadInput, match="no environment matches"):
        resolve_ids(["Zzz-*/aime24"], env_dir)


def test_a_factory_must_build_an_environment():
    register("broken", lambda env_id, env_dir=None: object())
    try:
        with pytest.raises(TypeError, match="not an autotts.Environment"):
            make("broken:x")
    finally:
        _TYPES.pop("broken")


def test_a_new_type_with_an_extra_signal_runs_everywhere_ids_do(confidence_type, env_dir):
    assert registered_types()[0] == "confidence"
    env = make("confidence:Qwen3-8B/aime24")
    controller = StopWhenConfident()
    result = env.run_episode(controller, controller.params(0.0), 0, 0)
    assert result.error is None and result.answer is not None
    # the signal followed the branches: one value per generated interval
    plain = make("Qwen3-8B/aime24", env_dir).run_episode(controller, controller.params(0.0), 0, 0)
    assert result.tokens < plain.tokens  # stopping on the signal spends less

    report = autotts.evaluate(
        StopWhenConfident,
        ["confidence:Qwen3-8B/aime24", "Qwen3-8B/aime24"],
        betas=[0.0, 1.0],
        seeds=3,
        env_dir=env_dir,
        workers=2,
    )
    assert [r.status for r in report.rows] == ["ok"] * 4
    with_signal = report.row("stop-when-confident", "confidence:Qwen3-8B/aime24", "β=0")
    assert with_signal.episodes == 3 * 3


def test_the_signal_holds_one_value_per_interval(confidence_type):
    env = make("confidence:Qwen3-8B/aime24")
    seen = []

    class Watch(Controller):
        name = "watch"

        @staticmethod
        def schedule(beta):
            return {}

        def run(self, state):
            yield autotts.Branch(2)
            yield Continue([0], 2)
            seen.append(([len(c) for c in state.signals["confidence"]], list(state.depth)))
            return "0"

    env.run_episode(Watch(), {}, 1, 0)
    lengths, depths = seen[0]
    assert lengths == depths == [3, 1]
