"""Strategy objects: names, options recorded and rebuilt, and runs recorded before them."""

import pytest

import autotts
from autotts.discovery.strategies import (
    LLMStrategy,
    OptunaStrategy,
    TuneStrategy,
    strategy_from,
    strategy_of_run,
)


def test_names_and_objects_give_the_same_strategy():
    assert strategy_from("optuna") == OptunaStrategy()
    assert strategy_from("tune") == TuneStrategy()
    nsga = OptunaStrategy(sampler="nsga2", storage="sqlite:///x.db")
    assert strategy_from(nsga) is nsga
    assert autotts.OptunaStrategy is OptunaStrategy and not OptunaStrategy.runs_untrusted_code
    assert LLMStrategy.runs_untrusted_code


def test_bad_strategies_are_bad_input():
    with pytest.raises(autotts.BadInput, match="unknown strategy 'nope'"):
        strategy_from("nope")
    with pytest.raises(autotts.BadInput, match="unknown Optuna sampler 'foo'"):
        OptunaStrategy(sampler="foo")
    with pytest.raises(autotts.BadInput, match="strategy 'llm'"):
        strategy_from("llm")  # needs a model


def test_a_recorded_strategy_is_rebuilt_without_its_secrets():
    llm = LLMStrategy("m", "http://127.0.0.1:1/v1", api_key="secret", isolate=False)
    options = llm.options()
    assert "api_key" not in options and "isolate" not in options
    config = {"strategy": "llm", "llm": options}
    again = strategy_of_run(config, api_key="k2")
    assert again == llm and again.api_key == "k2" and again.isolate
    # runs recorded before strategy objects: the Optuna options lived in the search settings
    old = {"strategy": "optuna", "search": {"sampler": "nsga2", "storage": None, "x": 1}}
    assert strategy_of_run(old) == OptunaStrategy(sampler="nsga2")
    assert strategy_of_run({"strategy": "tune", "search": {}}) == TuneStrategy()
