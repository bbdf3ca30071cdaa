"""The one episode loop: results in order, a CPU-time limit per episode, and the sums."""

from conftest import fixture_controller

from autotts.core.episodes import Tally, play_episodes
from autotts.envs.registry import make
from autotts.loading.controller_files import load_controller


def test_episodes_play_in_order_and_tally(env_dir):
    env = make("Qwen3-8B/aime24", env_dir)
    cmc = load_controller("cmc")
    params = cmc.params(0.5)
    episodes = [(env, params, q, s) for q in (0, 1) for s in (0, 1, 2)]
    tally = Tally()
    results = []
    for result in play_episodes(cmc, episodes, record_trace=False):
        tally.add(env, result)
        results.append(result)
    assert [(r.question, r.seed) for r in results] == [(q, s) for _, _, q, s in episodes]
    direct = [env.run_episode(cmc, params, q, s, record_trace=False) for _, _, q, s in episodes]
    assert results == direct
    assert tally.episodes == 6 and tally.errors == 0
    assert tally.tokens == sum(r.tokens for r in direct)
    assert tally.correct == sum(env.is_correct(r.question, r.answer) for r in direct)


def test_an_episode_over_its_cpu_time_fails_alone(env_dir):
    env = make("Qwen3-8B/aime24", env_dir)
    hangs = load_controller(fixture_controller("hangs"))
    episodes = [(env, hangs.params(0.0), 0, seed) for seed in (0, 1)]
    tally = Tally()
    for result in play_episodes(hangs, episodes, time_limit_s=0.3):
        tally.add(env, result)
    assert tally.episodes == 2 and tally.errors == 2
    assert "CPU-time limit" in tally.first_error and tally.first_error.startswith(
        "question 0, seed 0"
    )
