"""The vectorised composable engines (numpy and compiled) equal the per-episode engine, episode
by episode: same answer, same tokens."""

import random

import numpy as np
import pytest

from autotts.core.contract import ActionError
from autotts.discovery.optuna_search import composable_config
from autotts.discovery.scoring import (
    evaluate_composable,
    score,
    score_per_episode,
    vector_data,
)
from autotts.discovery.search_space import CHOICES, RANGES, cmc_point, normalize
from autotts.envs.registry import shared
from autotts.envs.replay import ReplayEnvironment
from autotts.envs.replay_arrays import VectorData, VectorReplay
from autotts.envs.stores import QuestionRecord
from autotts.evaluation.evaluator import evaluate
from autotts.loading.controller_files import load_controller

SHIPPED = [f"Qwen3-{m}/aime{y}" for m in ("0.6B", "1.7B", "4B", "8B") for y in (24, 25)]
FAMILY = "controllers/discovered/optuna_family.py"


def random_points(n: int, seed: int) -> list[dict]:
    """Points of the whole space, the policies beyond CMC often switched off."""
    rng = random.Random(seed)
    points = []
    for _ in range(n):
        point = {name: rng.choice(options) for name, options in CHOICES.items()}
        for name, (low, high, integer) in RANGES.items():
            point[name] = rng.randint(int(low), int(high)) if integer else rng.uniform(low, high)
            if name in ("depth_decay", "margin_share", "hold_rounds", "quorum"):
                point[name] *= rng.random() < 0.6
        points.append(normalize(point))
    return points


def assert_parity(env: ReplayEnvironment, points: list[dict], seeds: int, engines=("compiled",)):
    data = vector_data(env)
    expected, expected_tokens = score_per_episode(env, points, seeds)
    for engine in engines:
        answers, correct, tokens = score(data, points, seeds, engine=engine)
        got = data.texts(answers)
        mismatch = np.argwhere((got != expected) | (tokens != expected_tokens))
        assert not len(mismatch), (
            f"{engine} differs from the engine at (point, question, seed) {mismatch[0]}: "
            f"{points[mismatch[0][0]]}"
        )
        gold = np.array([env.gold(q) for q in range(len(env))], dtype=object)
        assert (correct == (expected == gold[None, :, None])).all()


@pytest.mark.parametrize("env_id", SHIPPED)
def test_parity_on_every_shipped_environment(env_dir, env_id):
    env = shared(env_id, str(env_dir))
    family = load_controller(FAMILY)
    points = [cmc_point(b) for b in (0.0, 0.5, 1.0)] + [family.params(b) for b in (0.1, 0.9)]
    points += random_points(6, seed=len(env_id))
    assert_parity(env, points, seeds=2, engines=("compiled", "numpy"))


def tiny_store(seed: int) -> ReplayEnvironment:
    """Few answers (ties everywhere), ERR probes, branches finishing on their first interval
    and branches shorter than their probes (the finishing charge clamps at zero)."""
    rng = random.Random(seed)
    records = []
    for q in range(4):
        branches = []
        for _ in range(24):
            probes = [rng.choice(["1", "2", "3", "ERR"]) for _ in range(rng.randint(0, 7))]
            tokens = rng.randint(0, 10) * 25 + len(probes) * rng.choice((90, 100))
            branches.append((probes, tokens, rng.choice(["1", "2", "3", "4"])))
        records.append(
            QuestionRecord(
                question=f"q{q}", gold_answer=str(q % 3 + 1), probe_freq=100, each_branch=branches
            )  # fmt: skip
        )
    return ReplayEnvironment("tiny/synthetic", records)


@pytest.mark.parametrize("store_seed", [0, 1, 2])
def test_parity_on_tiny_stores_full_of_ties(store_seed):
    points = random_points(40, seed=100 + store_seed)
    for point in points:  # the tiny store has 24 branches per question
        point["max_branches"] = min(point["max_branches"], 24)
        point["n_init"] = min(point["n_init"], point["max_branches"])
    assert_parity(tiny_store(store_seed), points, seeds=4, engines=("compiled", "numpy"))


def test_the_vector_environment_refuses_what_the_engine_refuses():
    data = VectorData.from_env(tiny_store(0))
    env = VectorReplay(data, [0, 1], [0, 0], width=4)
    env.open(np.array([2, 1]))
    assert env.opened.tolist() == [2, 1] and env.depth[:, :2].tolist() == [[1, 1], [1, 0]]
    with pytest.raises(ActionError, match="episode 1: cannot open 4 more branches: 1 of 4"):
        env.open(np.array([0, 4]))
    steps = np.zeros((2, 4), dtype=np.int16)
    steps[1, 2] = 1
    with pytest.raises(ActionError, match="episode 1: branch 2 is not alive"):
        env.extend(steps)


def test_evaluate_composable_equals_evaluate(env_dir):
    points = [cmc_point(0.3), random_points(1, seed=5)[0]]
    configs = [composable_config(p, label=f"p{i}") for i, p in enumerate(points)]
    envs = ["Qwen3-0.6B/aime25", "Qwen3-8B/aime24"]
    fast = evaluate_composable(configs, points, envs, seeds=5, env_dir=env_dir)
    slow = evaluate(configs, envs, seeds=5, env_dir=env_dir, trace_seeds=0, workers=1)
    assert len(fast.rows) == len(slow.rows) == 4
    for a, b in zip(fast.rows, slow.rows, strict=True):
        assert (a.controller, a.env_id, a.accuracy, a.tokens, a.episodes, a.status) == (
            b.controller, b.env_id, b.accuracy, b.tokens, b.episodes, b.status,
        )  # fmt: skip
        assert a.accuracy_estimate == b.accuracy_estimate and a.tokens_estimate == b.tokens_estimate


def test_an_unknown_engine_is_refused(env_dir):
    with pytest.raises(ValueError, match="unknown scoring engine 'gpu'"):
        score(
            vector_data(shared("Qwen3-8B/aime24", str(env_dir))), [cmc_point(0.5)], 1, engine="gpu"
        )


def test_only_generated_family_files_take_the_vectorised_path(tmp_path):
    from autotts.discovery.family import Family, family_source, is_family_file

    family = Family({"widen": "eager"}, {"n_init": [(0.0, 2), (1.0, 9)]})
    path = tmp_path / "family.py"
    path.write_text(family_source(family, "mine", "# header\n# more", class_name="Mine"))
    assert is_family_file(path)
    path.write_text(path.read_text().replace("yield Branch(n_init)", "yield Branch(1)"))
    assert not is_family_file(path)
    assert not is_family_file("controllers/baselines/cmc.py")
    assert is_family_file(FAMILY)


def test_the_benchmark_prints_the_speed_up_and_the_parity(env_dir):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "vectorised_scoring.py"
    done = subprocess.run(
        [sys.executable, str(script), "--seeds", "2", "--repeat", "1", "--env-dir", str(env_dir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "compiled vs per-episode:" in done.stdout
    for engine in ("compiled", "numpy"):
        assert f"parity {engine}: 2,640 of 2,640 episodes identical" in done.stdout


def test_the_confidence_table_is_beta_confidence_exactly():
    from autotts.core.voting import beta_confidence, beta_confidence_table

    table = beta_confidence_table(70)
    for top1 in range(70):
        for top2 in range(top1 + 1):
            assert table[top1, top2] == beta_confidence(top1, top2), (top1, top2)
