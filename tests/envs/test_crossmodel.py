import json

import pytest
from conftest import Scripted, tiny_store

from autotts import Branch, Continue, Controller, Probe, Read
from autotts.envs.cross_model import QWEN3_PARAMETERS, CostModel, CrossModelEnvironment
from autotts.envs.replay import ReplayEnvironment
from autotts.envs.stores import StoreError, load_records
from autotts.loading.controller_files import load_controller


class OnModel(Controller):
    """Runs another controller with every Branch/Read pinned to one model."""

    name = "on-model"

    def __init__(self, inner, model):
        self.inner, self.model = inner, model

    @staticmethod
    def schedule(beta):
        return {}

    def run(self, state, **params):
        run, reply = self.inner.run(state, **params), None
        try:
            while True:
                action = run.send(reply)
                if isinstance(action, Branch | Read):
                    action.model = self.model
                reply = yield action
        except StopIteration as stop:
            return stop.value


@pytest.fixture(scope="module")
def cross(env_dir):
    return CrossModelEnvironment.load("aime24", env_dir=env_dir)


def test_one_model_alone_replays_its_single_model_environment_exactly(cross, env_dir):
    assert cross.models == tuple(QWEN3_PARAMETERS)
    for model in ("Qwen3-1.7B", "Qwen3-8B"):
        single = ReplayEnvironment.load(f"{model}/aime24", env_dir)
        for name, beta in (("cmc", 1.0), ("asc", 0.5)):
            controller = load_controller(name)
            params = controller.params(beta)
            for question in (0, 7, 29):
                for seed in range(3):
                    a = single.run_episode(controller, params, question, seed)
                    b = cross.run_episode(OnModel(controller, model), params, question, seed)
                    assert (b.answer, b.tokens, b.trace) == (a.answer, a.tokens, a.trace)
                    assert b.model_tokens[model] == b.tokens
                    assert b.cost == pytest.approx(b.tokens * 2 * QWEN3_PARAMETERS[model])


def test_mixed_episode_prices_each_token_by_its_model(cross):
    script = Scripted(
        [
            Branch(2, model="Qwen3-0.6B"),
            Read(1, model="Qwen3-8B"),
            Continue([0, 1], steps=[3, 200]),  # branch 1 runs to its end
            Branch(1, model="Qwen3-0.6B"),
            Probe([0]),
        ]
    )
    result = cross.run_episode(script, {}, 3, 5)
    assert result.error is None
    state = script.state
    assert state.models == cross.models
    assert state.model == ["Qwen3-0.6B", "Qwen3-0.6B", "Qwen3-8B", "Qwen3-0.6B"]
    small = result.model_tokens["Qwen3-0.6B"]
    big = result.model_tokens["Qwen3-8B"]
    assert small + big == result.tokens == state.tokens
    assert state.depth[0] == 4 and state.finished[1] and state.finished[2]
    assert (
        big
        == cross.stores["Qwen3-8B"]._episode_order(cross.questions[3].index["Qwen3-8B"], 5)[2][0]
    )
    assert result.cost == pytest.approx(small * 1.2e9 + big * 16.4e9)
    assert state.cost == result.cost
    assert state.cost_per_token == {m: 2 * p for m, p in QWEN3_PARAMETERS.items()}
    # the 0.6B branches came from the 0.6B order, the second Branch continues it
    order = cross.stores["Qwen3-0.6B"]._episode_order(cross.questions[3].index["Qwen3-0.6B"], 5)
    assert state.history[0][:3] == list(order[0][0][:3])
    assert result.trace[3][1] == (3,)


@pytest.mark.parametrize(
    "action, message",
    [
        (Branch(1), "not in this environment; name one of state.models"),
        (Read(2, model="Qwen3-32B"), "model 'Qwen3-32B' is not in this environment"),
        (Read(129, model="Qwen3-4B"), "cannot open 129 more Qwen3-4B branches: 0 of its 128"),
    ],
)
def test_model_errors_are_clear(cross, action, message):
    result = cross.run_episode(Scripted([action]), {}, 0, 0)
    assert message in result.error


def test_single_model_environment_accepts_only_its_model(env_dir):
    env = ReplayEnvironment.load("Qwen3-8B/aime24", env_dir)
    ok = env.run_episode(Scripted([Branch(2, model="Qwen3-8B"), Read(1)]), {}, 0, 0)
    assert ok.error is None
    bad = env.run_episode(Scripted([Branch(1, model="Qwen3-4B")]), {}, 0, 0)
    assert "replays Qwen3-8B only" in bad.error


def _two_stores(tmp_path, second_question="What is 3+4?", second_gold="7"):
    branches = [[["7", "7"], 1200, "7"], [["1"], 600, "8"]]
    tiny_store(tmp_path / "A-1B" / "d.json", branches)
    tiny_store(tmp_path / "B-2B" / "d.json", branches, second_gold, question=second_question)
    table = CostModel(models={"A-1B": {"parameters": 1e9}, "B-2B": {"parameters": 2e9}})
    return tmp_path, table


def test_questions_are_matched_by_text_and_mismatches_refused(tmp_path):
    root, table = _two_stores(tmp_path, second_question="What   is 3+4?\n")
    env = CrossModelEnvironment.load("d", ["A-1B", "B-2B"], root, table)
    assert len(env) == 1 and env.env_id == "A-1B+B-2B/d"
    with pytest.raises(StoreError, match="does not hold every question of A-1B/d"):
        root, table = _two_stores(tmp_path / "x", second_question="What is 5+4?")
        CrossModelEnvironment.load("d", ["A-1B", "B-2B"], root, table)
    with pytest.raises(StoreError, match="different gold answers"):
        root, table = _two_stores(tmp_path / "y", second_gold="8")
        CrossModelEnvironment.load("d", ["A-1B", "B-2B"], root, table)
    with pytest.raises(StoreError, match="no entry in the cost table"):
        root, _ = _two_stores(tmp_path / "z")
        CrossModelEnvironment.load("d", ["A-1B", "B-2B"], root)


def test_partial_store_is_refused(tmp_path, env_dir):
    records = load_records(env_dir / "Qwen3-4B" / "aime24.json")[:29]
    (tmp_path / "Qwen3-4B").mkdir()
    (tmp_path / "Qwen3-4B" / "aime24.json").write_text(
        json.dumps([r.model_dump(exclude_none=True) for r in records])
    )
    (tmp_path / "Qwen3-8B").mkdir()
    (tmp_path / "Qwen3-8B" / "aime24.json").write_text(
        (env_dir / "Qwen3-8B" / "aime24.json").read_text()
    )
    with pytest.raises(StoreError, match=r"Qwen3-4B/aime24 does not hold every question .*1 miss"):
        CrossModelEnvironment.load("aime24", ["Qwen3-8B", "Qwen3-4B"], tmp_path)


def test_shipped_cost_table_is_the_default():
    from autotts.envs.stores import PROJECT_ROOT

    assert CostModel.load(PROJECT_ROOT / "environments" / "qwen3-flops.yaml") == CostModel()


def test_price_table_in_dollars_and_its_errors(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text("unit: usd\nmodels:\n  A-1B: {usd_per_million_tokens: 0.5}\n  B-2B: {}\n")
    table = CostModel.load(path)
    assert table.per_token("A-1B") == pytest.approx(5e-7)
    with pytest.raises(StoreError, match="'B-2B': the cost table gives no 'usd_per_million"):
        table.per_token("B-2B")
    path.write_text("unit: joules\n")
    with pytest.raises(StoreError, match=r"prices.yaml: field unit: Input should be"):
        CostModel.load(path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(StoreError, match="bad.json: not valid JSON"):
        CostModel.load(tmp_path / "bad.json")


def test_charging_a_finished_branch_again_is_priced_by_its_model(cross):
    """The AutoTTS-API adapter's ChargeAgain: the branch's last interval, at its model's rate."""
    from autotts.core.contract import ChargeAgain

    finish = [Branch(1, model="Qwen3-0.6B"), Branch(1, model="Qwen3-8B"), Continue([1], 200)]
    once = cross.run_episode(Scripted(finish), {}, 3, 5)
    twice = cross.run_episode(Scripted([*finish, ChargeAgain(1), ChargeAgain(1)]), {}, 3, 5)
    order = cross.stores["Qwen3-8B"]._episode_order(cross.questions[3].index["Qwen3-8B"], 5)
    last_interval = max(0, order[2][0] - cross.questions[3].delta * len(order[0][0]))
    assert last_interval > 0
    assert twice.tokens - once.tokens == 2 * last_interval
    assert twice.model_tokens["Qwen3-8B"] - once.model_tokens["Qwen3-8B"] == 2 * last_interval
    assert twice.cost - once.cost == pytest.approx(2 * last_interval * 16.4e9)
    assert [step[0] for step in twice.trace][-2:] == ["charge_again", "charge_again"]
    unfinished = cross.run_episode(Scripted([*finish, ChargeAgain(0)]), {}, 3, 5)
    assert "ChargeAgain(0): only a finished branch can be charged again" in unfinished.error
