"""The collaboration searches are strategy objects behind discovery's base."""

from autotts.collab.graph_strategies import AgentStrategy, GraphOptunaStrategy, collab_strategy
from autotts.collab.search_run import CollabSettings
from autotts.discovery.strategies import Strategy


def test_settings_name_their_strategy_and_old_runs_still_load():
    optuna = collab_strategy(CollabSettings(objective="budget", seed=3))
    assert optuna == GraphOptunaStrategy("budget", 3) and isinstance(optuna, Strategy)
    agent = collab_strategy(CollabSettings(strategy="agent", batch=2, lr=0.5), api_key="k")
    assert agent == AgentStrategy(2, 0.5) and agent.api_key == "k"
    assert "api_key" not in agent.options()
    # runs recorded before the rename call the strategy "method"
    assert CollabSettings.recorded({"method": "agent"}).strategy == "agent"
