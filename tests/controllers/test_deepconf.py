"""DeepConf on hand-made stores with confidence: every filtering, weighting and stopping rule
with hand-computed answers and tokens (windows of one interval unless said otherwise),
``autotts check`` on a confidence store, and the refusal elsewhere (tests/core/test_signals.py)."""

import random

import pytest
from conftest import signal_store

import autotts
from autotts.envs.replay import ReplayEnvironment
from autotts.envs.stores import load_records

SEED = 5


def env_of(tmp_path, branches, conf, name="d"):
    path = signal_store(tmp_path / "T" / f"{name}.json", branches, {"confidence": conf}, seed=SEED)
    return ReplayEnvironment(f"T/{name}", load_records(path))


def play(env, **params):
    deepconf = autotts.load_controller("deepconf")
    result = env.run_episode(deepconf, deepconf.params(1.0, **params), 0, SEED)
    assert result.error is None, result.error
    return result.answer, result.tokens


@pytest.fixture
def offline(tmp_path):
    """Lowest confidences (window of one interval) A 1.0, A 1.1, B 1.9, ERR 5.0, C 0.1."""
    branches = [
        [["A"], 700, "A"],
        [["A"], 800, "A"],
        [["B"], 900, "B"],
        [[], 300, "ERR"],
        [["C"], 600, "C"],
    ]
    conf = [[1.0, 1.2], [1.1, 1.3], [1.9, 2.0], [5.0], [0.2, 0.1]]
    return env_of(tmp_path, branches, conf)


def test_offline_filters_the_least_confident_then_weighs_votes(offline):
    common = {"mode": "offline", "budget": 4, "window_tokens": 500}
    tokens = 700 + 800 + 900 + 300  # four whole traces read
    # everything kept: A 1.0 + 1.1 = 2.1 against B 1.9 (ERR never votes)
    assert play(offline, keep=1.0, **common) == ("A", tokens)
    # keep half: threshold = median of 1.0, 1.1, 1.9 = 1.1 -> A 1.1 against B 1.9
    assert play(offline, keep=0.5, **common) == ("B", tokens)
    # keep 10 %: threshold 1.1 + 0.8 * 0.8 = 1.74 -> B alone
    assert play(offline, keep=0.1, **common) == ("B", tokens)
    # a fifth trace: C weighs 0.1
    assert play(offline, keep=1.0, mode="offline", budget=5, window_tokens=500) == ("A", 3300)


def test_offline_windows_span_several_intervals(offline):
    # windows of two intervals: each trace is one group, its mean: A 1.1 + 1.2 against B 1.95
    answer, _ = play(offline, mode="offline", budget=4, keep=0.5, window_tokens=1000)
    # threshold = median of 1.1, 1.2, 1.95 = 1.2: A 1.2 against B 1.95
    assert answer == "B"
    assert play(offline, mode="offline", budget=4, keep=1.0, window_tokens=1000)[0] == "A"


@pytest.fixture
def online(tmp_path):
    """Warm-up: A (lowest 2.0), B (1.0) -> threshold 1.5 at keep 0.5. Then C, whose second
    interval drops to 1.2, and B, which finishes at 1.6, 1.7."""
    branches = [
        [["A"], 700, "A"],
        [["B"], 600, "B"],
        [["C"] * 3, 2000, "C"],
        [["B"], 700, "B"],
    ]
    conf = [[3.0, 2.0], [1.0, 1.0], [2.0, 1.2, 3.0, 3.0], [1.6, 1.7]]
    return env_of(tmp_path, branches, conf)


ONLINE = {"mode": "online", "warmup": 2, "budget": 4, "window_tokens": 500}


def test_online_stops_at_consensus_after_the_warmup(online):
    # only A (2.0 >= 1.5) votes after the warm-up: share 1.0 >= 0.95
    assert play(online, keep=0.5, consensus=0.95, **ONLINE) == ("A", 700 + 600)


def test_online_stops_traces_whose_window_falls_below_the_threshold(online):
    # a wave of two: C is pruned when its second interval (1.2) falls below 1.5; B finishes
    # above it and votes 1.6; A 2.0 against B 1.6, and the budget of four is spent
    assert play(online, keep=0.5, consensus=1.01, **ONLINE) == ("A", 1300 + 1000 + 700)
    # DeepConf-low: threshold = 90th percentile of 1.0, 2.0 = 1.9: B is stopped after its
    # first interval (1.6), C after its second
    assert play(online, keep=0.1, consensus=1.01, **ONLINE) == ("A", 1300 + 500 + 1000)


def test_online_finishing_below_the_threshold_does_not_vote(tmp_path):
    branches = [[["A"], 700, "A"], [["B"], 600, "B"], [["B"], 700, "B"], [["B"], 700, "B"]]
    conf = [[3.0, 2.0], [1.0, 1.0], [1.6, 1.2], [1.6, 1.9]]
    env = env_of(tmp_path, branches, conf, "f")
    # the third trace ends at 1.2 < 1.5: stopped; the fourth votes B 1.6 < A 2.0
    assert play(env, keep=0.5, consensus=1.01, **ONLINE) == ("A", 1300 + 1400)
    # with a threshold of 1.0 both vote: B 1.2 + 1.6 = 2.8 > A 2.0
    assert play(env, keep=1.0, consensus=1.01, **ONLINE) == ("B", 1300 + 1400)


def test_online_windows_are_checked_only_once_full(online):
    params = {**ONLINE, "window_tokens": 1000}
    # windows of two intervals; warm-up lowest groups A 2.5, B 1.0 -> threshold 1.75 at keep
    # 0.5. C is not checked after one interval; its first full window (2.0, 1.2) = 1.6 < 1.75
    # stops it after two. B's single group (1.6, 1.7) = 1.65 < 1.75: it finishes, not voting
    assert play(online, keep=0.5, consensus=1.01, **params) == ("A", 1300 + 1000 + 700)
    # keep everything: threshold 1.0; C's windows 1.6, 2.1, 3.0 stay above, so it runs to the
    # end and votes 1.6; B votes 1.0 (warm-up, at the threshold) + 1.65 = 2.65 > A 2.5
    assert play(online, keep=1.0, consensus=1.01, **params) == ("B", 1300 + 2000 + 700)


def test_deepconf_passes_autotts_check_on_a_confidence_store(tmp_path):
    rng = random.Random(0)
    branches, conf = [], []
    for _ in range(40):
        steps = rng.randint(1, 8)
        answer = rng.choice("AAB") if rng.random() < 0.9 else "ERR"
        branches.append([[answer] * steps, 500 * steps + rng.randint(1, 499), answer])
        conf.append([round(rng.uniform(0.5, 3.0), 3) for _ in range(steps + 1)])
    path = signal_store(
        tmp_path / "T" / "check.json", branches, {"confidence": conf}, seed=None, questions=3
    )
    report = autotts.check("deepconf", "T/check", env_dir=path.parent.parent, seeds=2)
    assert report.ok, report


def test_sandboxed_deepconf_sees_the_same_confidence(tmp_path, offline):
    from autotts.sandbox import isolation_problems

    if isolation_problems():
        pytest.skip(f"no OS isolation here: {isolation_problems()}")
    env_dir = tmp_path
    # the offline fixture's store, run by the sandbox worker and recomputed by the parent
    in_process = autotts.evaluate(
        "deepconf@mode=offline@keep=0.5@budget=4@window_tokens=500", "T/d", env_dir=env_dir,
        seeds=8, sandbox=False,
    )  # fmt: skip
    sandboxed = autotts.evaluate(
        "deepconf@mode=offline@keep=0.5@budget=4@window_tokens=500", "T/d", env_dir=env_dir,
        seeds=8, sandbox=True,
    )  # fmt: skip
    (a,), (b,) = in_process.rows, sandboxed.rows
    assert a.status == b.status == "ok", (a.status, b.status)
    assert (a.accuracy, a.tokens) == (b.accuracy, b.tokens)


def test_traces_without_confidence_values_never_vote(tmp_path):
    branches = [[["A"], 700, "A"], [["B"], 600, "B"], [["B"], 700, "B"]]
    env = env_of(tmp_path, branches, [[None, None]] * 3, "n")
    for mode in ("online", "offline"):
        answer, _ = play(env, mode=mode, warmup=1, budget=3, keep=0.5, window_tokens=500)
        assert answer == "A"  # nothing could vote: the first final answer, as the docstring says
    deepconf = autotts.load_controller("deepconf")
    bad = env.run_episode(deepconf, deepconf.params(1.0, keep=0.0), 0, SEED)
    assert "keep is the fraction" in bad.error
