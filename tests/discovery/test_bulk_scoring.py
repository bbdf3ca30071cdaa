"""The composable policy's compiled form (bulk scoring) equals its specification played by the
per-episode engine, episode by episode: same answer, same tokens. Exported family files are
the installed policy with a schedule, and files exported before that still run alike."""

import random
from pathlib import Path

import numpy as np
import pytest

import autotts
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


def assert_parity(env: ReplayEnvironment, points: list[dict], seeds: int):
    data = vector_data(env)
    expected, expected_tokens = score_per_episode(env, points, seeds)
    answers, correct, tokens = score(data, points, seeds)
    got = data.texts(answers)
    mismatch = np.argwhere((got != expected) | (tokens != expected_tokens))
    assert not len(mismatch), (
        f"the compiled policy differs from the engine at (point, question, seed) {mismatch[0]}: "
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
    assert_parity(env, points, seeds=2)


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
    assert_parity(tiny_store(store_seed), points, seeds=4)


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


def test_only_generated_family_files_take_the_compiled_path(tmp_path):
    from autotts.discovery.family import Family, family_source, is_family_file

    policy = autotts.ComposableController
    family = Family(
        {**policy.FIXED, "widen": "eager"}, {**policy.KNOTS, "n_init": [(0.0, 2), (1.0, 9)]}
    )
    path = tmp_path / "family.py"
    source = family_source(family, "mine", "# header\n# more", class_name="Mine")
    path.write_text(source)
    assert is_family_file(path)
    assert len(source.splitlines()) < 40  # the schedule, not a 200-line copy of the policy
    for change in (
        ("    # fmt: on", "    def run(self, state, **p):\n        yield from ()\n    # fmt: on"),
        ("from autotts import ComposableController", "from mine import ComposableController"),
        ('"eager"', "open('x').read()"),
    ):
        path.write_text(source.replace(*change))
        assert not is_family_file(path), change
    assert not is_family_file("controllers/baselines/cmc.py")
    assert not is_family_file(OLD_EXPORT)  # a full copy: run per episode, never trusted as one
    assert is_family_file(FAMILY)


OLD_EXPORT = Path(__file__).parents[1] / "fixtures" / "controllers" / "exported_before_packages.py"


def test_a_family_exported_before_the_policy_moved_runs_as_before(env_dir):
    """A file ``autotts export`` wrote when it copied the whole policy (the shipped family
    before this layout) plays every episode exactly as today's short file of the same
    schedule."""
    old, new = load_controller(OLD_EXPORT), load_controller(FAMILY)
    for beta in (0.0, 0.15, 0.5, 1.0):
        assert old.schedule(beta) == new.schedule(beta)
    report = evaluate(
        [f"{OLD_EXPORT}@beta=0,0.15,0.5,1", f"{FAMILY}@beta=0,0.15,0.5,1"],
        ["Qwen3-1.7B/aime24", "Qwen3-8B/aime25"], seeds=3, env_dir=env_dir, trace_seeds=0,
    )  # fmt: skip
    rows = {(r.controller, r.setting, r.env_id): r for r in report.rows}
    for (name, setting, env_id), row in rows.items():
        if name == "optuna-family":
            before = rows[("exported-before-packages", setting, env_id)]
            assert report.outcomes(row) == report.outcomes(before), (setting, env_id)


def test_cmc_as_a_point_of_the_policy_equals_the_standalone_cmc(env_dir):
    """CMC is the composable policy with CMC's schedule; the standalone controller it replaced
    (kept as a fixture) gives the same episodes on every search environment."""
    standalone = Path(__file__).parents[1] / "fixtures" / "controllers" / "cmc_standalone.py"
    betas = "0,0.1,0.35,0.5,0.75,1"
    report = evaluate(
        [f"cmc@beta={betas}", f"{standalone}@beta={betas}"],
        [f"Qwen3-{m}/aime24" for m in ("0.6B", "1.7B", "4B", "8B")], seeds=3,
        env_dir=env_dir, trace_seeds=0,
    )  # fmt: skip
    rows = {(r.controller, r.setting, r.env_id): r for r in report.rows}
    compared = 0
    for (name, setting, env_id), row in rows.items():
        if name == "cmc":
            other = rows[("cmc-standalone", setting, env_id)]
            assert report.outcomes(row) == report.outcomes(other), (setting, env_id)
            compared += 1
    assert compared == 24


def test_the_benchmark_prints_the_speed_up_and_the_parity(env_dir):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bulk_scoring.py"
    done = subprocess.run(
        [sys.executable, str(script), "--seeds", "2", "--repeat", "1", "--env-dir", str(env_dir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "compiled vs per-episode:" in done.stdout
    assert "parity compiled: 2,640 of 2,640 episodes identical" in done.stdout


def test_the_confidence_table_is_beta_confidence_exactly():
    from autotts.core.voting import beta_confidence, beta_confidence_table

    table = beta_confidence_table(70)
    for top1 in range(70):
        for top2 in range(top1 + 1):
            assert table[top1, top2] == beta_confidence(top1, top2), (top1, top2)
