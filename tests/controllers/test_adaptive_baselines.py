"""The adaptive baselines beyond the paper's table (FFS, short-m@k, Dynasor-CoT, length-weighted
SC): each stopping and voting rule on hand-made branches with hand-computed answers and
tokens, the documented equalities on real data, and ``autotts check`` on every file."""

import numpy as np
import pytest
from conftest import tiny_store

import autotts
from autotts.envs.replay import ReplayEnvironment, branch_order
from autotts.envs.stores import load_records

NEW = ["ffs", "short_m_at_k", "dynasor_cot", "sc_length_weighted"]


def store(tmp_path, branches, name="s"):
    path = tiny_store(tmp_path / "Toy" / f"{name}.json", branches, gold="A")
    return ReplayEnvironment(f"Toy/{name}", load_records(path))


def play(env, name, seed=0, **params):
    controller = autotts.load_controller(name)
    result = env.run_episode(controller, params, 0, seed)
    assert result.error is None, result.error
    return result.answer, result.tokens


def test_ffs_answers_with_the_first_branch_to_finish(tmp_path):
    env = store(tmp_path, [[["1"] * 5, 3000, "1"], [["2", "2"], 1200, "2"], [["3"] * 2, 1100, "3"]])
    for seed in range(6):
        answer, tokens = play(env, "ffs", seed, n=3)
        # branches 1 and 2 both finish in the third interval: the one opened first wins
        first = next(b for b in branch_order(seed, 3) if b in (1, 2))
        assert answer == str(first + 1)
        assert tokens == 3 * 500 + 1200 + 1100  # branch 0 stopped after three intervals
    assert play(env, "ffs", n=1)[1] in (3000, 1200, 1100)  # one sample: read whole


@pytest.fixture
def five(tmp_path):
    """Finishing steps 1, 2, 2, 4, 7 (of 500 tokens) with answers A, B, B, A, C."""
    return store(
        tmp_path,
        [
            [[], 300, "A"],
            [["B"], 800, "B"],
            [["B"], 900, "B"],
            [["A"] * 3, 1800, "A"],
            [["C"] * 6, 3400, "C"],
        ],
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_short_m_at_k_votes_among_the_first_m_to_finish(five, seed):
    assert play(five, "short_m_at_k", seed, k=5, m=1) == ("A", 300 + 4 * 500)
    # stop after the second interval: A, B, B have finished
    assert play(five, "short_m_at_k", seed, k=5, m=3) == ("B", 300 + 800 + 900 + 2 * 1000)
    # after the fourth: A 2, B 2 — the tie goes to A, whose shortest voter finished first
    assert play(five, "short_m_at_k", seed, k=5, m=4) == ("A", 300 + 800 + 900 + 1800 + 2000)
    assert play(five, "short_m_at_k", seed, k=5, m=5) == ("A", 300 + 800 + 900 + 1800 + 3400)


def test_dynasor_stops_a_chain_when_its_last_probes_agree(tmp_path):
    env = store(
        tmp_path,
        [[["5", "7", "7", "7", "7"], 3000, "7"], [["ERR", "ERR", "ERR", "9"], 2500, "9"]],
    )
    for seed in range(4):
        # window 3: chain 0 settles on 7 after its fourth probe (2000 tokens); chain 1 never
        # agrees with itself (ERR is unusable) and finishes with 9; the 1–1 tie goes to the
        # answer seen first
        assert play(env, "dynasor_cot", seed, n=2, window=3) == ("7", 2000 + 2500)
        assert play(env, "dynasor_cot", seed, n=2, window=2) == ("7", 1500 + 2500)
        # window 6: neither agrees in time; chain 1 finishes one interval earlier, its 9 first
        assert play(env, "dynasor_cot", seed, n=2, window=6) == ("9", 3000 + 2500)


def test_length_weighted_sc_prefers_short_finished_branches(tmp_path):
    env = store(tmp_path, [[["A"] * 10, 5200, "A"]] * 3 + [[[], 400, "B"]] * 2)
    tokens = 3 * 5200 + 2 * 400
    assert play(env, "sc_length_weighted", n=5, gamma=0.0) == ("A", tokens)  # plain majority
    # A: 3·exp(−11/32) = 2.13 > B: 2·exp(−1/32) = 1.94
    assert play(env, "sc_length_weighted", n=5, gamma=1.0) == ("A", tokens)
    # A: 3·exp(−22/32) = 1.51 < B: 2·exp(−2/32) = 1.88
    assert play(env, "sc_length_weighted", n=5, gamma=2.0) == ("B", tokens)


def outcomes(report, controller):
    rows = [r for r in report.rows if r.controller == controller]
    return [np.asarray(report.outcomes(r)) for r in rows]


def test_ffs_is_short_1_at_k_and_unweighted_sc_is_sc(env_dir):
    report = autotts.evaluate(
        ["ffs@n=1,8,64", "short_m_at_k@k=1,8,64@m=1", "sc@n=1,8,64",
         "sc_length_weighted@n=1,8,64@gamma=0"],
        "Qwen3-8B/aime24", seeds=5, env_dir=env_dir,
    )  # fmt: skip
    for a, b in (("ffs", "short-m-at-k"), ("sc", "sc-length-weighted")):
        for x, y in zip(outcomes(report, a), outcomes(report, b), strict=True):
            assert np.array_equal(x, y)


@pytest.mark.parametrize("name", NEW)
def test_autotts_check_passes(env_dir, name):
    report = autotts.check(name, env_dir=env_dir, questions=4, seeds=2)
    assert report.ok, report
