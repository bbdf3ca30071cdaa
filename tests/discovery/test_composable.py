"""The composable controller: CMC exactly at its neutral point, and each policy beyond CMC
doing what its docstring says (on hand-made branches and on real replay data)."""

import numpy as np
import pytest
from conftest import tiny_store

import autotts
from autotts.discovery.composable import NEUTRAL, ComposableController
from autotts.discovery.optuna_search import composable_config
from autotts.discovery.search_space import RANGES, cmc_point
from autotts.envs.replay import ReplayEnvironment
from autotts.envs.stores import load_records

ENV = "Qwen3-8B/aime24"


def tables(report, config):
    """Per-episode (correct, tokens) tables of one configuration."""
    (row,) = [r for r in report.rows if r.config == config]
    correct, tokens = report.outcomes(row)
    return np.asarray(correct), np.asarray(tokens)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_the_neutral_point_is_exactly_cmc(env_dir, beta):
    point = cmc_point(beta)
    assert {k: point[k] for k in NEUTRAL} == NEUTRAL and set(RANGES) <= set(point)
    mine = composable_config(point)
    report = autotts.evaluate([mine, f"cmc@beta={beta}"], ENV, seeds=5, env_dir=env_dir)
    (cmc,) = [r.config for r in report.rows if r.controller == "cmc"]
    for ours, theirs in zip(tables(report, mine), tables(report, cmc), strict=True):
        assert np.array_equal(ours, theirs)  # every episode: same correctness, same tokens


@pytest.fixture(scope="module")
def short_vs_long(tmp_path_factory):
    """Two long branches answering A (12 probes each) and one short one answering B."""
    path = tiny_store(
        tmp_path_factory.mktemp("vote") / "Toy" / "v.json",
        [[["A"] * 12, 6500, "A"], [["A"] * 12, 6500, "A"], [[], 300, "B"]],
        gold="B",
    )
    return ReplayEnvironment("Toy/v", load_records(path))


# open all three branches, never prune, never stop before every branch finished
EXHAUST = dict(
    cmc_point(1.0), n_init=3, max_branches=3, widen="never", prune=False, min_complete=8,
    conf_thresh=0.99,
)  # fmt: skip


def play(env, **params):
    result = env.run_episode(ComposableController(), {**EXHAUST, **params}, 0, 0)
    assert result.error is None, result.error
    return result


def test_depth_decay_prefers_short_finished_branches(short_vs_long):
    plain = play(short_vs_long)
    assert plain.answer == "A"  # two votes beat one
    # A: 2 · exp(−3 · 13/32) = 0.59 < B: exp(−3 · 1/32) = 0.91
    decayed = play(short_vs_long, depth_decay=3.0)
    assert decayed.answer == "B" and decayed.tokens == plain.tokens  # same spend, other answer
    assert play(short_vs_long, depth_decay=0.5).answer == "A"  # 2 · 0.82 > 0.98


def test_quorum_answers_when_enough_finished_branches_agree(short_vs_long):
    plain = play(short_vs_long)
    first = play(short_vs_long, quorum=1)  # short-1@3: the first branch to finish
    assert first.answer == "B" and first.tokens < plain.tokens
    assert "1 finished branches agree" in first.reason
    both = play(short_vs_long, quorum=2)  # waits for the two A branches
    assert both.answer == "A" and "2 finished branches agree" in both.reason


@pytest.mark.parametrize("knob", [{"margin_share": 0.7}, {"hold_rounds": 3}])
def test_stricter_stopping_only_ever_spends_more(env_dir, knob):
    """margin_share / hold_rounds add conditions to the stop: every episode replays exactly like
    CMC up to CMC's stop, then may go on — never fewer tokens, and more somewhere."""
    neutral = composable_config(cmc_point(0.5))
    strict = composable_config({**cmc_point(0.5), **knob})
    report = autotts.evaluate([neutral, strict], ENV, seeds=3, env_dir=env_dir)
    _, base = tables(report, neutral)
    _, more = tables(report, strict)
    assert (more >= base).all() and (more > base).any()


def test_quorum_only_ever_stops_earlier(env_dir):
    neutral = composable_config(cmc_point(0.5))
    early = composable_config({**cmc_point(0.5), "quorum": 3})
    report = autotts.evaluate([neutral, early], ENV, seeds=3, env_dir=env_dir)
    _, base = tables(report, neutral)
    _, fewer = tables(report, early)
    assert (fewer <= base).all() and (fewer < base).any()


def test_runs_recorded_before_the_new_knobs_still_normalise():
    from autotts.discovery.search_space import normalize

    old = {k: v for k, v in cmc_point(0.5).items() if k not in NEUTRAL}
    assert normalize(old) == cmc_point(0.5)


def test_an_exported_family_is_a_formatted_controller_that_runs_like_its_schedule(tmp_path):
    import subprocess
    import sys

    from autotts.discovery.family import Family, family_source
    from autotts.loading.controller_files import load_controller

    knots = {k: [(0.0, v), (1.0, v)] for k, v in cmc_point(0.5).items() if k in RANGES}
    knots["depth_decay"] = [(0.0, 0.0), (0.5, 1.25), (1.0, 2.5)]
    family = Family({"widen": "eager", "prune": True, "probe_votes": 0, "final_votes": 1}, knots)
    path = tmp_path / "exported.py"
    path.write_text(family_source(family, "my-family", "# header"))
    check = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--quiet", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr  # commits as exported
    controller = load_controller(path)
    assert controller.name == "my-family"
    assert controller.schedule(0.5) == family.params(0.5)
    assert controller.schedule(0.5)["depth_decay"] == 1.25


def test_budget_windows_choose_the_structure_that_is_best_inside_them():
    from autotts.discovery.family import (
        Point,
        choose_structure,
        choose_structure_for_windows,
        fit_family,
    )
    from autotts.discovery.search_space import structure

    base = cmc_point(0.5)
    cheap = {**base, "widen": "eager"}  # good at small budgets only
    grand = {**base, "widen": "never"}  # dominates overall thanks to its expensive points
    points = [
        Point(cheap, 60.0, 1e5), Point(cheap, 61.0, 2e5),
        Point(grand, 55.0, 1e5), Point(grand, 58.0, 2e5),
        Point(grand, 80.0, 8e5), Point(grand, 85.0, 1.6e6),
    ]  # fmt: skip
    assert choose_structure(points) == structure(grand)
    assert choose_structure_for_windows(points, [1.5e5, 2.5e5]) == structure(cheap)
    family = fit_family(points, windows=[1.5e5, 2.5e5])
    assert family.fixed["widen"] == "eager"
    assert max(p.tokens for p in family.anchors) <= 2.5e5  # the front is cut at the top window
