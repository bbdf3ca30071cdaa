"""AutoTTS-API methods live: one episode at a time vs several in flight, steps merged.

A method written for the AutoTTS paper's API waits for the answer of each ``probe_new()`` /
``probe_more(i)``, so each of its episodes sends the engine one branch per call. With
``episodes_in_flight`` (``autotts validate --episodes-in-flight K``) the episodes of K
questions/seeds are played side by side and their calls merged into one batch
(:mod:`autotts.live.lockstep`). Builds the tiny local model (or takes --model) and plays the
reference's Parallel-Probe (``../shared/autotts-api/cmc_method.py``) both ways, greedy, and
prints wall time, engine calls, mean batch size and whether the results are identical.

    python benchmarks/lockstep_legacy.py [--model DIR] [--questions 8] [--seeds 2]
                                         [--in-flight 8] [--method FILE:Class]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

API = Path(__file__).resolve().parents[2] / "shared" / "autotts-api" / "cmc_method.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model dir or id (default: the tiny one)")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--method", default=f"{API}:Parallel_Probe")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    from autotts.live.backend import VLLMBackend
    from autotts.live.live_environment import LiveQuestion
    from autotts.live.settings import LiveSettings
    from autotts.live.validation import validate_live
    from autotts.loading.controller_files import load_controller

    model = args.model
    if model is None:
        from autotts.live.tiny import build_tiny_model

        model = str(build_tiny_model(Path(tempfile.mkdtemp(prefix="autotts-lockstep-")) / "m"))
    backend = VLLMBackend(model, max_model_len=1024, enforce_eager=True, seed=0)
    settings = LiveSettings(delta=32, max_branch_tokens=160, probe_tokens=6, temperature=0.0)
    questions = [LiveQuestion(f"What is {i} + {i}?", str(2 * i)) for i in range(args.questions)]
    method = load_controller(args.method)
    params = method.params(0.0, num_chains=4, T=3, warm_up=1, max_steps=4)
    rows = {}
    try:
        for in_flight in (1, args.in_flight):
            calls, batches = backend.stats.calls, len(backend.stats.batch_sizes)
            start = time.perf_counter()
            report = validate_live(backend, questions, method, params, settings, args.seeds,
                                   max_branches=8, episodes_in_flight=in_flight)  # fmt: skip
            seconds = time.perf_counter() - start
            sizes = backend.stats.batch_sizes[batches:]
            rows[in_flight] = (seconds, backend.stats.calls - calls, sum(sizes) / len(sizes),
                               [(t["answer"], t["tokens"]) for t in report["traces"]])  # fmt: skip
            print(
                f"{in_flight:>2} in flight: {seconds:6.2f} s, {rows[in_flight][1]:>4} engine "
                f"calls, mean batch {rows[in_flight][2]:.2f}",
                flush=True,
            )
    finally:
        backend.close()
    alone, together = rows[1], rows[args.in_flight]
    print(
        f"ratio: {alone[0] / together[0]:.2f}x faster with {args.in_flight} in flight, "
        f"{alone[1] / together[1]:.1f}x fewer engine calls; identical results: "
        f"{alone[3] == together[3]}"
    )


if __name__ == "__main__":
    main()
