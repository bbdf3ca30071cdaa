"""The sandbox protocol's two sides in one process: what the worker's round loop and the
parent's engine cost per episode, without pipes, processes or isolation, next to the trusted
evaluator on the same episodes.

The worker side (:func:`autotts.sandbox.remote.play_remote`) talks to the parent side
(:class:`autotts.sandbox.serving.EpisodeServer`) over an in-memory channel; CPU seconds are
split by timing the parent's part of every round (serving it and marshalling the answer).
What a real sandboxed evaluation costs beyond the sum is the price of the processes taking
turns (``benchmarks/candidate_eval.py`` measures the whole).

    python benchmarks/protocol_sides.py [--seeds 10] [--controller cmc] [--in-flight 32]
"""

from __future__ import annotations

import argparse
import marshal
import time
from collections import deque

from autotts.discovery.runs import AIME24
from autotts.envs.replay import ReplayEnvironment
from autotts.evaluation.evaluator import DEFAULT_BETAS, RunConfig, evaluate
from autotts.loading.controller_files import load_controller
from autotts.sandbox.remote import header_of, play_remote
from autotts.sandbox.runner import MAX_BRANCHES, _limited
from autotts.sandbox.serving import EpisodeServer


class TimedLoopback:
    """The parent's engine behind an in-memory channel, timing the parent's part."""

    def __init__(self, server: EpisodeServer):
        self.server, self.replies, self.parent_s = server, deque(), 0.0

    def send(self, payload: bytes) -> None:
        start = time.process_time()
        self.replies.append(marshal.dumps(self.server.serve(payload)))
        self.parent_s += time.process_time() - start

    def receive(self) -> bytes:
        return self.replies.popleft()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--controller", default="cmc")
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()
    controller = load_controller(args.controller)
    betas = list(DEFAULT_BETAS)
    params = [controller.params(beta) for beta in betas]
    engines = {e: _limited(ReplayEnvironment.load(e), MAX_BRANCHES, 1000) for e in AIME24}
    keys = [(e, q) for e, env in engines.items() for q in range(len(env))]
    headers = []
    for env_id, question in keys:
        source = engines[env_id].episode_source(question, 0)
        headers.append(header_of(source[0](*source[1:]).state))
    units, served = [], []
    for position, (env_id, question) in enumerate(keys):
        for config in range(len(betas)):
            for seed in range(args.seeds):
                units.append((config, position))
                served.append((engines[env_id], question, seed))
    server = EpisodeServer(served, args.in_flight, 1000, lambda n: False, lambda n, r: None)
    channel = TimedLoopback(server)
    start = time.process_time()
    play_remote(controller, params, headers, units, args.in_flight, channel)
    both = time.process_time() - start
    start = time.process_time()
    evaluate(
        [RunConfig(args.controller, beta=b) for b in betas], AIME24, seeds=args.seeds, workers=1,
        trace_seeds=0,
    )  # fmt: skip
    trusted = time.process_time() - start
    n = len(units)
    worker = both - channel.parent_s
    print(f"{args.controller}: {n:,} episodes, {args.in_flight} per group, one process")
    for label, seconds in (("worker side", worker), ("parent side", channel.parent_s),
                           ("both", both), ("trusted evaluator", trusted)):  # fmt: skip
        print(f"{label:18}{seconds:8.2f} CPU s {1e6 * seconds / n:9.1f} µs/episode")
    print(f"both / trusted: {both / trusted:.2f}×")


if __name__ == "__main__":
    main()
