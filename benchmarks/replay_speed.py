"""Replay throughput: autotts's engine vs a plain per-branch-object Python replay.

Both replay the same controllers on the same environment and seeds, single process, and must
give identical accuracy and tokens. Printed per method: episodes/s of each, their ratio, and
the ratio to the reference evaluator's quoted throughput (reference-results.md, lower end of
its range) with the issue's target (≥ 50× for hand-designed baselines, ≥ 10× for CMC).

    python benchmarks/replay_speed.py [--env Qwen3-8B/aime24] [--seeds 100] [--env-dir DIR]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter

from autotts.core.voting import beta_confidence
from autotts.envs import replay
from autotts.envs.replay import ReplayEnvironment
from autotts.envs.stores import load_environment_records
from autotts.loading.controller_files import load_controller

REFERENCE_EPS = {
    "sc": 5000,
    "asc": 600,
    "esc": 1400,
    "parallel-probe": 115,
    "cmc β=0.5": 235,
    "cmc β=1.0": 200,
}
TARGET_RATIO = {"cmc β=0.5": 10, "cmc β=1.0": 10}
GOALS = {"asc": 30_000, "cmc β=1.0": 2_500}  # the absolute goals, episodes/s


# --- the plain replay: one object per branch, one call per interval ----------------------


class PlainBranch:
    def __init__(self, probes, tokens, final, delta):
        self.probes, self.tokens, self.final, self.delta = probes, tokens, final, delta
        self.depth, self.spent, self.finished, self.latest = 0, 0, False, None

    def step(self) -> int:
        if self.depth < len(self.probes):
            self.latest = self.probes[self.depth]
            self.depth += 1
            self.spent += self.delta
            return self.delta
        cost = max(0, self.tokens - self.spent)
        self.spent += cost
        self.finished, self.latest = True, self.final
        return cost


class PlainEpisode:
    def __init__(self, record, seed):
        self.branches = list(record.each_branch)
        random.Random(seed).shuffle(self.branches)
        self.delta, self.next, self.tokens = record.probe_freq, 0, 0

    def open(self) -> PlainBranch:
        probes, tokens, final = self.branches[self.next]
        self.next += 1
        branch = PlainBranch(probes, tokens, final, self.delta)
        self.tokens += branch.step()
        return branch

    def read(self) -> str:
        probes, tokens, final = self.branches[self.next]
        self.next += 1
        self.tokens += tokens
        return final

    def extend(self, branch: PlainBranch) -> None:
        self.tokens += branch.step()


def plain_majority(answers):
    counts = Counter(answers)
    return counts.most_common(1)[0][0] if counts else None


def plain_conf(answers):
    counts = Counter(answers).most_common(2)
    if not counts:
        return None, 0.0
    return counts[0][0], beta_confidence(counts[0][1], counts[1][1] if len(counts) > 1 else 0)


def plain_sc(ep, n=64):
    return plain_majority([ep.read() for _ in range(n)])


def plain_asc(ep, n=64, tau=0.95):
    answers = []
    for _ in range(n):
        answers.append(ep.read())
        if len(answers) >= 2:
            leader, c = plain_conf(answers)
            if c > tau:
                return leader
    return plain_majority(answers)


def plain_esc(ep, n=64, w=8):
    answers = []
    for _ in range(n // w):
        window = [ep.read() for _ in range(w)]
        answers += window
        if len(set(window)) == 1:
            return window[0]
    return plain_majority(answers)


def plain_parallel_probe(ep, n=64, T=40, patience=7, warm_up=15):
    branches = [ep.open() for _ in range(n)]
    pruned, off = [False] * n, [0] * n
    leader = prev = None
    stable = 0
    for step in range(100):
        for i, b in enumerate(branches):
            if not pruned[i] and not b.finished:
                ep.extend(b)
        alive = [i for i in range(n) if not pruned[i]]
        leader = plain_majority(branches[i].latest for i in alive)
        if step >= warm_up and len(alive) > 1:
            changed = False
            for i in alive:
                if branches[i].finished:
                    continue
                off[i] = off[i] + 1 if branches[i].latest != leader else 0
                if off[i] >= patience:
                    pruned[i] = changed = True
            if changed:
                leader = plain_majority(branches[i].latest for i in range(n) if not pruned[i])
        stable = stable + 1 if step > 0 and leader == prev else 0
        prev = leader
        if stable >= T or all(b.finished or pruned[i] for i, b in enumerate(branches)):
            break
    return leader


def plain_cmc(ep, p):
    branches, pool = [], []
    for _ in range(p["n_init"]):
        b = ep.open()
        b.abandoned, b.disagree, b.ext = False, 0, 0
        branches.append(b)
        if b.finished:
            pool.append(b.latest)
    ema, hist = 0.0, []
    for r in range(500):
        winner, conf = plain_conf(pool)
        ema = (1 - p["alpha"]) * ema + p["alpha"] * conf
        hist = (hist + [ema])[-p["ema_window"] :]
        warm = r >= p["warm_up"]
        alive = [b for b in branches if not b.abandoned and not b.finished]
        if warm and winner is not None:
            for b in alive:
                b.disagree = b.disagree + 1 if b.latest != winner else 0
            worst = sorted(
                [b for b in alive if b.disagree >= p["abandon_patience"]], key=lambda b: -b.disagree
            )
            for b in worst[: max(0, len(alive) - 2)]:
                b.abandoned = True
        for b in sorted(
            [b for b in branches if not b.abandoned and not b.finished], key=lambda b: -b.ext
        ):
            steps = p["burst_aligned"] if warm and winner is not None and b.latest == winner else 1
            for _ in range(steps):
                ep.extend(b)
                b.ext += 1
                if b.finished:
                    pool.append(b.latest)
                    break
        winner, conf = plain_conf(pool)
        ema = (1 - p["alpha"]) * ema + p["alpha"] * conf
        hist[-1] = ema
        trend = hist[-1] - hist[0] if len(hist) >= 2 else 0.0
        if (
            warm
            and len(pool) >= p["min_complete"]
            and ema >= p["conf_thresh"]
            and trend >= -p["slack"]
        ):
            return winner
        if all(b.finished or b.abandoned for b in branches):
            break
        if (
            len(branches) < p["max_branches"]
            and trend <= p["trend_thresh"]
            and r >= max(1, p["warm_up"] // 2)
            and ema < p["conf_thresh"]
        ):
            for _ in range(min(p["widen_burst"], p["max_branches"] - len(branches))):
                b = ep.open()
                b.abandoned, b.disagree, b.ext = False, 0, 0
                branches.append(b)
                if b.finished:
                    pool.append(b.latest)
    if pool:
        return plain_majority(pool)
    return plain_majority(b.latest for b in branches if not b.abandoned)


# --- measurement -------------------------------------------------------------------------


def measure(runs, records, seeds, repeat):
    """Best-of-``repeat`` episodes/s of each runner (the machine is shared and noisy: runners
    alternate within each repeat, so a slow spell hits all of them) and their (accuracy,
    tokens)."""
    best = [float("inf")] * len(runs)
    outcomes = [None] * len(runs)
    for _ in range(repeat):
        for slot, run in enumerate(runs):
            correct = tokens = 0
            start = time.perf_counter()
            for q, record in enumerate(records):
                for seed in range(seeds):
                    answer, cost = run(q, record, seed)
                    correct += answer == record.gold_answer
                    tokens += cost
            best[slot] = min(best[slot], time.perf_counter() - start)
            n = len(records) * seeds
            outcomes[slot] = (round(100 * correct / n, 2), round(tokens / n))
    n = len(records) * seeds
    return [(n / seconds, outcome) for seconds, outcome in zip(best, outcomes, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Qwen3-8B/aime24")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--env-dir", default=None)
    parser.add_argument("--repeat", type=int, default=5, help="best of N timings per method")
    args = parser.parse_args()
    records = load_environment_records(args.env, args.env_dir)
    env = ReplayEnvironment.load(args.env, args.env_dir)
    for q in range(len(env)):
        for seed in range(args.seeds):
            env._episode_order(q, seed)  # warm the per-(question, seed) order cache
    cmc = load_controller("cmc")
    methods = {
        "sc": ("sc", {"n": 64}, plain_sc),
        "asc": ("asc", {"n": 64, "threshold": 0.95}, plain_asc),
        "esc": ("esc", {"n": 64, "window": 8}, plain_esc),
        "parallel-probe": ("parallel-probe", {"n": 64}, plain_parallel_probe),
        "cmc β=0.5": ("cmc", cmc.params(0.5), lambda ep: plain_cmc(ep, cmc.params(0.5))),
        "cmc β=1.0": ("cmc", cmc.params(1.0), lambda ep: plain_cmc(ep, cmc.params(1.0))),
    }
    loop = "compiled" if replay._compiled_advance is not None else "pure Python"
    print(
        f"{args.env}, {len(records)} questions × {args.seeds} seeds, one process, traces recorded, "
        f"best of {args.repeat}, {loop} replay loop"
    )
    print(
        f"{'method':16}{'autotts eps/s':>15}{'plain eps/s':>13}{'vs plain':>10}{'vs reference':>14}{'target':>8}  identical"
    )
    measured = {}
    for label, (name, params, plain) in methods.items():
        controller = load_controller(name)
        params = controller.params(**params) if name != "cmc" else params

        def fast(q, record, seed, controller=controller, params=params):
            result = env.run_episode(controller, params, q, seed, record_trace=True)
            assert result.actions is not None  # the trace is recorded (rebuilt on demand)
            return result.answer, result.tokens

        def slow(q, record, seed, plain=plain):
            episode = PlainEpisode(record, seed)
            return plain(episode), episode.tokens

        (fast_eps, fast_result), (slow_eps, slow_result) = measure(
            [fast, slow], records, args.seeds, args.repeat
        )
        measured[label] = fast_eps
        target = TARGET_RATIO.get(label, 50)
        ratio_ref = fast_eps / REFERENCE_EPS[label]
        print(
            f"{label:16}{fast_eps:15,.0f}{slow_eps:13,.0f}{fast_eps / slow_eps:9.1f}×{ratio_ref:13.1f}×"
            f"{target:7d}×  {'yes' if fast_result == slow_result else 'NO ' + str((fast_result, slow_result))}"
        )

    for label, goal in GOALS.items():
        verdict = "met" if measured[label] >= goal else "NOT met"
        print(f"goal {label} ≥ {goal:,} episodes/s: {measured[label]:,.0f}, {verdict}")
    # Traces are recorded as action logs and rebuilt when read; the evaluator writes one seed
    # in a hundred. Reading every trace back is the worst case:
    params = cmc.params(1.0)

    def with_every_trace(q, record, seed):
        result = env.run_episode(cmc, params, q, seed, record_trace=True)
        assert len(result.trace) == len(result.actions)
        return result.answer, result.tokens

    [(eps, _)] = measure([with_every_trace], records, args.seeds, args.repeat)
    print(
        f"cmc β=1.0 reading back every episode's trace: {eps:,.0f} episodes/s "
        f"({eps / REFERENCE_EPS['cmc β=1.0']:.1f}× reference)"
    )


if __name__ == "__main__":
    main()
