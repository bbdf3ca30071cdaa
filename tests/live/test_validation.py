"""``autotts validate``'s numbers without an engine: the replay prediction of the questions a
store shares with the live ones, and the comparison's verdict (the live side: the validate
tests in tests/sandbox/test_live_episodes.py and, on a real engine, test_build_and_validate.py)."""

import numpy as np
import pytest

from autotts.core.episodes import play_episodes
from autotts.envs.replay import ReplayEnvironment
from autotts.live.questions import LiveQuestion
from autotts.live.validation import REPLAY_SEEDS, _comparison, _predict
from autotts.loading.controller_files import load_controller


def test_the_replay_prediction_counts_each_matched_question_once(env_dir):
    """A question asked twice live is one replay question: its row holds its own outcomes."""
    env = ReplayEnvironment.load("Qwen3-8B/aime24", env_dir)
    asked = [LiveQuestion(env.questions[i].text, "") for i in (5, 2, 9, 5)]
    asked.append(LiveQuestion("not in any store", "1"))
    cmc = load_controller("cmc")
    params = cmc.params(0.5)
    info, live, outcomes = _predict(cmc, params, asked, "Qwen3-8B", "Qwen3-8B/aime24", env_dir)
    assert info["matched"] == 3 and live == [0, 1, 2] and outcomes.shape == (3, REPLAY_SEEDS)
    assert info["accuracy"] == pytest.approx(100 * outcomes.mean())
    low, high = info["interval"]["low"], info["interval"]["high"]
    assert low <= info["accuracy"] <= high
    for row, question in enumerate((5, 2, 9)):
        alone = play_episodes(cmc, ((env, params, question, s) for s in range(REPLAY_SEEDS)))
        solved = [env.is_correct(question, r.answer) for r in alone]
        assert outcomes[row].tolist() == [float(x) for x in solved]


def test_a_verdict_needs_enough_matched_questions():
    replay = np.zeros((25, REPLAY_SEEDS))
    replay[:, ::2] = 1.0  # every question solved half the time on replay
    live = np.ones((25, 1))  # and always live
    compared = _comparison(live, list(range(25)), replay)
    assert compared["verdict"] == "live above replay" and compared["low"] > 0
    assert compared["live_accuracy"] == 100 and compared["replay_accuracy"] == 50
    few = _comparison(live[:5], list(range(5)), replay[:5])
    assert few["verdict"] == "no verdict on fewer than 20 matched questions"
    assert few["low"] > 0  # (the interval alone would have called it)
