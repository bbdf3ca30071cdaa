"""Live episodes: all branches of a step as one engine batch vs one request per branch.

Builds the tiny local model (or takes --model), starts one vLLM engine, and plays the same
episodes twice: through the backend as the live environment uses it (every Branch/Continue/
probe step is one ``generate`` call) and through a wrapper that sends each branch's request
alone. Greedy decoding makes both produce the same tokens; the ratio of wall-clock times is
what batching buys.

    python benchmarks/live_batching.py [--model DIR] [--branches 16] [--episodes 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from autotts.live.backend import GenerationBackend, VLLMBackend
from autotts.live.live_environment import LiveEnvironment, LiveQuestion
from autotts.live.settings import LiveSettings
from autotts.loading.controller_files import load_controller


class OneRequestPerBranch(GenerationBackend):
    """The same engine, one request per call: what a loop over branches would do."""

    name = "one-by-one"

    def __init__(self, inner: GenerationBackend):
        super().__init__()
        self.inner, self.model, self.max_model_len = inner, inner.model, inner.max_model_len

    def prompt(self, user_message, system=None, thinking=None):
        return self.inner.prompt(user_message, system, thinking)

    def encode(self, text):
        return self.inner.encode(text)

    def generate(self, requests):
        out = [self.inner.generate([r])[0] for r in requests]
        self._count(requests, out)
        return out


def play(backend, branches: int, episodes: int, settings: LiveSettings):
    questions = [LiveQuestion(f"What is {i} + {i}?", str(2 * i)) for i in range(episodes)]
    env = LiveEnvironment(backend, questions, settings, max_branches=branches)
    sc = load_controller("parallel-probe")
    params = sc.params(n=branches)
    start = time.perf_counter()
    results = [env.run_episode(sc, params, q, 0) for q in range(episodes)]
    seconds = time.perf_counter() - start
    assert all(r.error is None for r in results), [r.error for r in results]
    return seconds, [(r.answer, r.tokens) for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model dir (default: build the tiny one)")
    parser.add_argument("--branches", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from autotts.live.tiny import build_tiny_model

            model = str(build_tiny_model(os.path.join(tmp, "tiny")))
        backend = VLLMBackend(model, max_model_len=1024, enforce_eager=True)
        settings = LiveSettings(delta=32, max_branch_tokens=128, probe_tokens=6, temperature=0)
        play(backend, 2, 1, settings)  # warm-up (first-call compilation)
        batched_s, batched = play(backend, args.branches, args.episodes, settings)
        single_s, single = play(
            OneRequestPerBranch(backend), args.branches, args.episodes, settings
        )
        backend.close()
    print(
        f"parallel-probe, {args.branches} branches × {args.episodes} episodes, tiny model, "
        f"vLLM on this machine"
    )
    print(f"batched (one engine call per step):  {batched_s:7.2f} s")
    print(f"one request per branch:              {single_s:7.2f} s")
    print(f"ratio: {single_s / batched_s:.1f}× faster batched; identical results: "
          f"{'yes' if batched == single else 'NO'}")  # fmt: skip


if __name__ == "__main__":
    main()
