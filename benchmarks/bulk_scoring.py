"""Bulk vs per-episode scoring of the composable space over a full β × seed grid.

The grid: a β-family's 11 settings (β = 0, 0.1, …, 1) × every question × ``--seeds`` seeds on
each of the 4 AIME24 search environments (132,000 episodes at 100 seeds). The policy's two
forms play every episode of it in this one process (single core, so the ratio compares
engines, not core counts):

- **per-episode**: :meth:`ReplayEnvironment.run_episode` with the composable controller, the
  engine every evaluation uses (its replay loop compiled, when the install built it);
- **compiled**: :mod:`autotts.discovery.compiled` (numba), what discovery scores with.

Printed: wall seconds, episodes/s and the speed-up over per-episode for each (median of
``--repeat`` runs; numba's one-off compile or cache load is timed apart), then the parity check:
every episode's answer and tokens equal on both (exit status 1 otherwise).

    python benchmarks/bulk_scoring.py [--family FILE] [--seeds 100] [--repeat 3]
                                            [--env-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time

from autotts.discovery.runs import AIME24
from autotts.discovery.scoring import score, score_per_episode, vector_data
from autotts.envs.registry import shared
from autotts.evaluation.evaluator import DEFAULT_BETAS
from autotts.loading.controller_files import load_controller

TARGET = 20.0


def per_episode(envs, points, seeds):
    return [score_per_episode(env, points, seeds) for env in envs]


def compiled(envs, points, seeds):
    out = []
    for env in envs:
        data = vector_data(env)
        answers, _, tokens = score(data, points, seeds)
        texts = data.texts(answers)
        out.append((texts, tokens))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="controllers/discovered/optuna_family.py")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--env-dir", default=None)
    args = parser.parse_args()

    family = load_controller(args.family)
    points = [family.params(beta) for beta in DEFAULT_BETAS]
    envs = [shared(env_id, args.env_dir) for env_id in AIME24]
    for env in envs:
        vector_data(env)  # the arrays are built once per store, outside the timings
    episodes = len(points) * sum(len(env) for env in envs) * args.seeds
    print(f"grid: {len(points)} β × {len(envs)} environments × questions × {args.seeds} seeds")
    print(f"      = {episodes:,} episodes of {args.family}")

    began = time.perf_counter()
    score(vector_data(envs[0]), points[:1], 1, questions=[0])
    print(f"numba compile or cache load (once per process): {time.perf_counter() - began:.2f} s")

    runs = {
        "per-episode": lambda: per_episode(envs, points, args.seeds),
        "compiled": lambda: compiled(envs, points, args.seeds),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    results = {}
    for _ in range(args.repeat):
        for name, run in runs.items():
            began = time.perf_counter()
            results[name] = run()
            seconds[name].append(time.perf_counter() - began)

    base = statistics.median(seconds["per-episode"])
    print(f"\n{'engine':<12} {'seconds':>8} {'episodes/s':>11} {'speed-up':>9}")
    for name, values in seconds.items():
        wall = statistics.median(values)
        print(f"{name:<12} {wall:>8.2f} {episodes / wall:>11,.0f} {base / wall:>8.1f}×")
    ratio = base / statistics.median(seconds["compiled"])
    verdict = "meets" if ratio >= TARGET else "misses"
    print(f"compiled vs per-episode: {ratio:.1f}× ({verdict} the {TARGET:.0f}× target)")

    same = sum(
        int(((a == ra) & (t == rt)).sum())
        for (a, t), (ra, rt) in zip(results["compiled"], results["per-episode"], strict=True)
    )
    print(f"parity compiled: {same:,} of {episodes:,} episodes identical (answer and tokens)")
    return 0 if same == episodes else 1


if __name__ == "__main__":
    raise SystemExit(main())
