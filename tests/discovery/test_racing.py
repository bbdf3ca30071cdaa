"""Racing on fresh seeds, and the β-family through the raced points themselves."""

import json

import numpy as np
import pytest

from autotts.discovery.family import Point, anchor_family, family_source, monotone_chain
from autotts.discovery.racing import contenders, race, race_lines
from autotts.discovery.scoring import score, vector_data
from autotts.discovery.search_space import cmc_point, structure
from autotts.envs.registry import shared
from autotts.loading.controller_files import load_controller
from autotts.loading.run_configs import DEFAULT_BETAS
from autotts.results.run_directory import RunDirectory


def point(label, accuracy, tokens, beta=0.5, env_tokens=()):
    return Point(cmc_point(beta), accuracy, tokens, label, env_tokens)


def test_contenders_are_the_front_its_band_and_each_windows_best():
    points = [
        point("cheap", 50.0, 100), point("window", 49.0, 150), point("front", 60.0, 200),
        point("near", 59.6, 210), point("far", 55.0, 220), point("dear", 61.0, 400),
    ]  # fmt: skip
    for i, p in enumerate(points):  # distinct parameters: contenders are deduplicated by them
        p.params = {**p.params, "n_init": i + 1}
    # within 0.5 points of the front (which "far" and "window" are not)
    assert {p.label for p in contenders(points, caps=[])} == {"cheap", "front", "near", "dear"}
    # and the most accurate points inside a window, however far below the front
    labels = [p.label for p in contenders(points, caps=[160])]
    assert labels == ["cheap", "window", "front", "near", "dear"]  # cheapest first


def test_race_scores_contenders_on_seeds_the_search_never_played(tmp_path, env_dir):
    run = RunDirectory.create(tmp_path / "run", {"strategy": "optuna"})
    envs = ["Qwen3-8B/aime24", "Qwen3-0.6B/aime24"]
    points = [point(f"p{b}", 60.0 + b, 1000 * (1 + b), beta=b) for b in (0.1, 0.5, 0.9)]
    raced = race(run, points, envs, caps=[1e9], first_seed=20, seeds=3, env_dir=env_dir)
    recorded = json.loads((run.path / "race.json").read_text())
    assert recorded["seeds"] == [20, 22] and len(raced) == 3
    for p, entry in zip(raced, recorded["contenders"], strict=True):
        accuracies, tokens = [], []
        for env_id in envs:
            data = vector_data(shared(env_id, str(env_dir)))
            _, correct, spent = score(data, [entry["params"]], 3, first_seed=20)
            accuracies.append(100 * correct.mean())
            tokens.append(spent.mean())
        assert p.accuracy == pytest.approx(np.mean(accuracies))
        assert p.tokens == pytest.approx(np.mean(tokens))
        assert p.env_tokens == pytest.approx(tuple(tokens))
        assert entry["search"]["accuracy"] == next(q.accuracy for q in points if q.label == p.label)
    window = recorded["windows"][0]
    inside = [p for p in raced if p.tokens <= 1e9]
    assert window["best"] == max(inside, key=lambda p: p.accuracy).label
    low, high = window["accuracy_interval"]
    assert low <= window["accuracy"] <= high
    assert "contenders re-scored on seeds 20–22" in race_lines(recorded)[0]
    low, high = window["cross_validated_interval"]
    assert 0 <= low <= window["cross_validated_accuracy"] <= high <= 100
    assert "on the fold left out" in race_lines(recorded)[1]
    run.finish_stage("race")  # a finished race is read back, not run again
    again = race(run, [], envs, caps=[], first_seed=20, seeds=3, env_dir=env_dir)
    assert [(p.label, p.accuracy) for p in again] == [(p.label, p.accuracy) for p in raced]


def test_monotone_chain_keeps_cost_rising_on_every_environment():
    a = point("a", 50, 100, env_tokens=(100, 100))
    b = point("b", 55, 150, env_tokens=(250, 50))  # cheaper than a on the second environment
    c = point("c", 60, 200, env_tokens=(200, 200))
    assert [p.label for p in monotone_chain([a, b, c], set())] == ["a", "c"]
    # a preferred point outweighs any number of others
    assert [p.label for p in monotone_chain([a, b, c], {id(b)})] == ["b"]


def test_anchor_family_plays_its_anchors_exactly_on_the_beta_grid(tmp_path, env_dir):
    family_points = [cmc_point(b) for b in (0.0, 0.3, 0.6, 1.0)]
    family_points[1] = {**family_points[1], "widen": "eager", "final_votes": 2}
    points = [Point(p, 50.0 + 3 * i, 1000.0 * 2**i, f"t{i}") for i, p in enumerate(family_points)]
    family = anchor_family(points, windows=[2500.0, 9000.0])
    assert [p.label for p in family.anchors] == ["t0", "t1", "t2", "t3"]
    # four anchors on the grid 0, 0.3, 0.7, 1: each grid setting is one of them, exactly
    path = tmp_path / "family.py"
    path.write_text(family_source(family, "anchored"))
    controller = load_controller(str(path))
    for beta, anchor in zip((0.0, 0.3, 0.7, 1.0), family.anchors, strict=True):
        assert beta in [round(b, 4) for b in DEFAULT_BETAS]
        assert controller.params(beta) == family.params(beta) == anchor.params
    # the structure switches half-way between anchors of different structures
    assert structure(controller.params(0.1)) == structure(family_points[0])
    assert structure(controller.params(0.2)) == structure(family_points[1])
    assert structure(controller.params(0.5)) == structure(family_points[2])


def test_the_ladder_keeps_points_below_each_window():
    points = [Point({**cmc_point(0.5), "n_init": i + 1}, 50.0 + i, 100.0 * (i + 1), f"t{i}")
              for i in range(30)]  # fmt: skip
    family = anchor_family(points, windows=[1000.0], slots=5)
    # best under 80 %, 90 % and 100 % of the cap (t7, t8, t9, the dearest inside), the
    # cheapest, and the point farthest from those in log-tokens (t2)
    assert [p.label for p in family.anchors] == ["t0", "t2", "t7", "t8", "t9"]


def test_cross_validation_scores_the_choice_on_questions_it_did_not_see():
    from autotts.discovery.racing import _cross_validated

    correct = np.zeros((2, 10, 1))  # 2 contenders, 10 questions (fold = question % 5), 1 seed
    correct[0, 7:, 0] = 100  # right on questions 7–9
    correct[1, :7, 0] = 100  # right on questions 0–6: chosen on every training split
    tokens = np.ones((2, 10, 1))
    tokens[1] = 3.0
    # folds {0,5} {1,6} {2,7} {3,8} {4,9}: contender 1 scores 100, 100, 50, 50, 50
    wide = _cross_validated(5.0, [correct], [tokens])
    assert wide["cross_validated_accuracy"] == 70.0
    low, high = wide["cross_validated_interval"]
    assert low < 70.0 < high  # resampled over the 10 questions
    # a window contender 1 does not fit in: contender 0 scores 0, 0, 50, 50, 50
    assert _cross_validated(2.0, [correct], [tokens])["cross_validated_accuracy"] == 30.0
    assert _cross_validated(0.5, [correct], [tokens]) == {"cross_validated_accuracy": None}
