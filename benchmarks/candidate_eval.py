"""The discovery loop's inner cost: evaluating one candidate controller.

One candidate = a β grid of 11 × the 4 AIME24 search environments × 100 seeds (132,000
episodes for 30-question stores), on both cores. Measured two ways for a CMC-like Python
controller (``controllers/baselines/cmc.py``):

- **sandboxed**: as an untrusted LLM candidate (OS-isolated workers, gold-free payload, every
  action log replayed and scored in the parent, determinism checked on a random sample);
- **trusted**: the in-process evaluator used for the Optuna path's own composable controller.

Printed: seconds, episodes/s, the ratio to the 60-second target, and the sandboxed/trusted
ratio (target ≤ 1.3). ``--load N`` runs N CPU-bound processes next to the measurement: limits
are CPU time, so the candidate must still be accepted.

    python benchmarks/candidate_eval.py [--seeds 100] [--workers 2] [--load 0] [--env-dir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

from autotts.discovery.candidates import evaluate_candidate
from autotts.discovery.commands import AIME24
from autotts.evaluate import DEFAULT_BETAS, RunConfig, evaluate
from autotts.replay import ReplayEnvironment

TARGET_S = 60.0
TARGET_RATIO = 1.3


def _burn() -> None:
    while True:
        pass


CMC = Path(__file__).resolve().parents[1] / "controllers" / "baselines" / "cmc.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--env-dir", default=None)
    parser.add_argument("--load", type=int, default=0, help="CPU-bound processes to run beside")
    args = parser.parse_args()
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.load)]
    for burner in burners:
        burner.start()
    envs = {e: ReplayEnvironment.load(e, args.env_dir) for e in AIME24}
    betas = list(DEFAULT_BETAS)
    episodes = len(betas) * sum(len(env) for env in envs.values()) * args.seeds
    print(
        f"one candidate: {len(betas)} β × {len(envs)} envs × {args.seeds} seeds = {episodes:,} episodes, {args.workers} workers"
    )

    start = time.perf_counter()
    result = evaluate_candidate(
        CMC.read_text(), envs, betas, args.seeds, workers=args.workers, trace_seeds=1
    )
    sandboxed = time.perf_counter() - start
    assert result.ok, result.reason

    start = time.perf_counter()
    report = evaluate(
        [RunConfig(str(CMC), beta=b) for b in betas],
        AIME24,
        seeds=args.seeds,
        workers=args.workers,
        env_dir=args.env_dir,
        trace_seeds=1,
    )
    trusted = time.perf_counter() - start
    # both paths must agree on every number
    for point in result.curve:
        for env_id, (accuracy, tokens) in point["per_env"].items():
            row = report.row("cmc", env_id, f"β={point['beta']:g}")
            assert abs(row.accuracy - accuracy) < 1e-9 and abs(row.tokens - tokens) < 1e-6

    print(f"{'path':12}{'seconds':>10}{'episodes/s':>12}{'target':>10}{'target/actual':>15}")
    for label, seconds in (("sandboxed", sandboxed), ("trusted", trusted)):
        print(
            f"{label:12}{seconds:10.1f}{episodes / seconds:12,.0f}{TARGET_S:9.0f}s"
            f"{TARGET_S / seconds:14.2f}×"
        )
    ratio = sandboxed / trusted
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"sandboxed / trusted: {ratio:.2f}× (target ≤ {TARGET_RATIO}×: {verdict})")
    print(f"results identical on both paths: yes (machine load: {args.load} busy processes)")
    for burner in burners:
        burner.terminate()


if __name__ == "__main__":
    main()
