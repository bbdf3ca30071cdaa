"""The discovery loop's inner cost: evaluating one candidate controller.

One candidate = a β grid of 11 × the 4 AIME24 search environments × 100 seeds (132,000
episodes for 30-question stores), on both cores. Measured two ways for a CMC-like Python
controller (``controllers/baselines/cmc.py``):

- **sandboxed**: as an untrusted LLM candidate (OS-isolated workers that hold no store data,
  every action played on the parent's engine in lockstep rounds, scored in the parent,
  cross-episode state checked on a random sample);
- **trusted**: the in-process evaluator used for the Optuna path's own composable controller.

Both run ``--repeat`` times, interleaved (sandboxed first, then trusted first, ...), because
wall time on a shared machine drifts between runs. Printed per path: the median wall seconds,
episodes/s and the ratio to the 60-second target, and the CPU seconds of the run (parent and
its workers; the parent's own apart); then the sandboxed/trusted ratio of each back-to-back pair and their median, wall (target
≤ 1.3) and CPU; then how many workers' output the sandbox's parent can serve (it serves all
rounds on one core: beyond that, more cores do not make a sandboxed evaluation faster). The sandbox's isolation self-test runs once per process (≈ 0.2 s, cached) and is timed
on its own, before the runs. ``--load N`` runs N CPU-bound processes next to the
measurement: limits are CPU time, so the candidate must still be accepted.

    python benchmarks/candidate_eval.py [--seeds 100] [--workers 2] [--repeat 3] [--load 0]
                                        [--env-dir DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from pathlib import Path

from autotts.discovery.candidates import evaluate_candidate
from autotts.discovery.runs import AIME24
from autotts.envs.replay import ReplayEnvironment
from autotts.evaluation.evaluator import DEFAULT_BETAS, RunConfig, evaluate
from autotts.sandbox import isolation_problems

TARGET_S = 60.0
TARGET_RATIO = 1.3


def _timed(run):
    """Wall seconds, CPU seconds (this process and the workers it waited for) and this
    process's own CPU seconds of ``run()``."""
    wall, (own, children) = time.perf_counter(), _cpu_seconds()
    output = run()
    own_after, children_after = _cpu_seconds()
    parent = own_after - own
    return time.perf_counter() - wall, parent + children_after - children, parent, output


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds of this process, and of the child processes it waited for."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _burn() -> None:
    while True:
        pass


CMC = Path(__file__).resolve().parents[1] / "controllers" / "baselines" / "cmc.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
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
    problems = isolation_problems()
    assert not problems, problems
    print(f"isolation self-test (once per process): {time.perf_counter() - start:.2f} s")

    def sandboxed():
        result = evaluate_candidate(
            CMC.read_text(), envs, betas, args.seeds, workers=args.workers, trace_seeds=1
        )
        assert result.ok, result.reason
        return result

    def trusted():
        return evaluate(
            [RunConfig(str(CMC), beta=b) for b in betas],
            AIME24,
            seeds=args.seeds,
            workers=args.workers,
            env_dir=args.env_dir,
            trace_seeds=1,
        )

    timings: dict[str, list[tuple[float, float]]] = {"sandboxed": [], "trusted": []}
    parent_cpu: dict[str, list[float]] = {"sandboxed": [], "trusted": []}
    outputs = {}
    for repeat in range(args.repeat):
        order = ("sandboxed", "trusted") if repeat % 2 == 0 else ("trusted", "sandboxed")
        for label in order:
            run = {"sandboxed": sandboxed, "trusted": trusted}[label]
            wall, cpu, parent, outputs[label] = _timed(run)
            timings[label].append((wall, cpu))
            parent_cpu[label].append(parent)
    result, report = outputs["sandboxed"], outputs["trusted"]
    # both paths must agree on every number
    for point in result.curve:
        for env_id, (accuracy, tokens) in point["per_env"].items():
            row = report.row("cmc", env_id, f"β={point['beta']:g}")
            assert abs(row.accuracy - accuracy) < 1e-9 and abs(row.tokens - tokens) < 1e-6

    median = {
        label: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for label, runs in timings.items()
    }
    print(
        f"{'path':12}{'seconds':>10}{'episodes/s':>12}{'target':>10}{'target/actual':>15}"
        f"{'CPU s':>9}{'parent':>8}   (medians of {args.repeat}; every wall time: seconds)"
    )
    for label, (wall, cpu) in median.items():
        every = ", ".join(f"{w:.1f}" for w, _ in timings[label])
        parent = statistics.median(parent_cpu[label])
        print(
            f"{label:12}{wall:10.1f}{episodes / wall:12,.0f}{TARGET_S:9.0f}s"
            f"{TARGET_S / wall:14.2f}×{cpu:9.1f}{parent:8.1f}   ({every})"
        )
    pairs = list(zip(timings["sandboxed"], timings["trusted"], strict=True))
    ratios = [s[0] / t[0] for s, t in pairs]
    ratio = statistics.median(ratios)
    cpu_ratio = statistics.median(s[1] / t[1] for s, t in pairs)
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(
        f"sandboxed / trusted: {ratio:.2f}× wall (median of the {len(pairs)} back-to-back "
        f"pairs: {', '.join(f'{r:.2f}' for r in ratios)}; target ≤ {TARGET_RATIO}×: "
        f"{verdict}), {cpu_ratio:.2f}× CPU"
    )
    print(f"results identical on both paths: yes (machine load: {args.load} busy processes)")
    # The parent serves every worker's rounds on one core: past this many workers it is the
    # bottleneck, whatever the machine's core count.
    parent = statistics.median(parent_cpu["sandboxed"])
    workers_cpu = median["sandboxed"][1] - parent
    print(
        f"parent: {1e6 * parent / episodes:.0f} µs CPU per episode, so it serves at most "
        f"{episodes / parent:,.0f} episodes/s: the output of {workers_cpu / parent:.1f} workers "
        f"at their {1e6 * workers_cpu / episodes:.0f} µs per episode (determinism checks "
        "included)"
    )
    for burner in burners:
        burner.terminate()


if __name__ == "__main__":
    main()
