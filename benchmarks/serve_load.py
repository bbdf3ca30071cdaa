"""Load on ``autotts serve``: throughput and latency at 1, 4 and 16 concurrent clients.

The app (:func:`autotts.serving.app`) runs on 127.0.0.1 in front of vLLM in this process;
``--requests`` chat requests per level go through the official ``openai`` client, each
client asking with its own seed, for each served controller (SC@8 — ``sc@beta=0.5`` — and
the discovered family by default). Printed per controller and level: requests/s, p50 and
p95 latency, tokens generated per request, errors; then the gain of cross-request batching:
requests/s at the highest level over one request at a time. ``--sandboxed`` also serves each
controller as an LLM-written (marked) copy, ``NAME-sandboxed``, whose every episode runs in a
fresh isolated worker: its rows show what the sandbox costs a request. Exit status 1 on any
error.

CPU (the tiny random model, built in seconds; its answers are noise, the plumbing is real):

    python benchmarks/serve_load.py --model tiny --requests 16

GPU (Qwen3-8B, the same command with a real model and real settings):

    python benchmarks/serve_load.py --model Qwen/Qwen3-8B --delta 500 --max-branch-tokens 16384 \\
        --requests 64 --levels 1,4,16,64 --gpu-memory-utilization 0.9
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from autotts.live.backend import VLLMBackend
from autotts.live.settings import LiveSettings
from autotts.loading.controller_files import mark_untrusted, resolve_controller_path
from autotts.serving import app, serving

QUESTION = "Find the number of positive integers n less than 100 such that n is divisible by 7."


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def load(client, model: str, level: int, requests: int) -> dict:
    def ask(seed: int) -> tuple[float, int, str | None]:
        began = time.perf_counter()
        try:
            reply = client.chat.completions.create(
                model=model, seed=seed, messages=[{"role": "user", "content": QUESTION}]
            )
        except openai.OpenAIError as exc:
            return time.perf_counter() - began, 0, f"{type(exc).__name__}: {exc}"
        return time.perf_counter() - began, reply.usage.completion_tokens, None

    began = time.perf_counter()
    with ThreadPoolExecutor(level) as pool:
        results = list(pool.map(ask, range(requests)))
    wall = time.perf_counter() - began
    latencies = [seconds for seconds, _, error in results if error is None]
    return {
        "rps": requests / wall,
        "p50": percentile(latencies, 0.5) if latencies else float("nan"),
        "p95": percentile(latencies, 0.95) if latencies else float("nan"),
        "tokens": statistics.mean(t for _, t, e in results if e is None) if latencies else 0,
        "errors": [e for *_, e in results if e is not None],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="'tiny' (built here) or a model path/id")
    parser.add_argument("--controllers", default="sc@beta=0.5,optuna-family@beta=0.5")
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--requests", type=int, default=16, help="requests per level")
    parser.add_argument("--delta", type=int, default=32)
    parser.add_argument("--max-branch-tokens", type=int, default=96)
    parser.add_argument("--probe-tokens", type=int, default=4)
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--gpu-memory-utilization", type=float, default=None)
    parser.add_argument(
        "--sandboxed", action="store_true",
        help="also serve each controller as an LLM-written (marked) copy, NAME-sandboxed: "
        "every request's episode in a fresh isolated worker",
    )  # fmt: skip
    args = parser.parse_args()

    model = args.model
    if model == "tiny":  # (vLLM's CPU build would take most of the memory for its KV cache)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from autotts.live.tiny import build_tiny_model

        model = str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny"))
    engine_args = {"enforce_eager": True, "max_model_len": args.max_model_len or 1024}
    if args.model == "tiny":
        # vLLM's CPU build fails on a seeded request whose prefill is split across steps
        # ("CPU Generator does not use offset"): prefill whole prompts there
        engine_args["enable_chunked_prefill"] = False
    if args.gpu_memory_utilization:
        engine_args["gpu_memory_utilization"] = args.gpu_memory_utilization
    backend = VLLMBackend(model, seed=0, **engine_args)
    settings = LiveSettings(
        delta=args.delta, max_branch_tokens=args.max_branch_tokens, probe_tokens=args.probe_tokens
    )
    specs = args.controllers.split(",")
    served = [s.split("@")[0] for s in specs]
    if args.sandboxed:
        copies = Path(tempfile.mkdtemp())
        for spec in list(specs):
            name, _, beta = spec.partition("@")
            copy = copies / f"{name}-sandboxed.py"
            source = resolve_controller_path(name).read_text(encoding="utf-8")
            copy.write_text(mark_untrusted(source, "serve_load"), encoding="utf-8")
            served.append(str(copy))
            specs.append(f"{name}-sandboxed" + (f"@{beta}" if beta else ""))
    levels = [int(x) for x in args.levels.split(",")]
    application = app(served, backend, settings, max_in_flight=max(levels), max_queue=0)
    failed = False
    with serving(application) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=3600)
        print(f"model {args.model}; {args.requests} requests per level; "
              f"Δ={args.delta}, branch ≤ {args.max_branch_tokens} tokens")  # fmt: skip
        print(f"{'controller':<26}{'clients':>8}{'req/s':>9}{'p50 s':>9}{'p95 s':>9}"
              f"{'tokens/req':>12}{'errors':>8}")  # fmt: skip
        for spec in specs:
            rates = {}
            for level in levels:
                row = load(client, spec, level, args.requests)
                rates[level] = row["rps"]
                failed |= bool(row["errors"])
                print(f"{spec:<26}{level:>8}{row['rps']:>9.2f}{row['p50']:>9.2f}{row['p95']:>9.2f}"
                      f"{row['tokens']:>12,.0f}{len(row['errors']):>8}")  # fmt: skip
                for error in row["errors"][:3]:
                    print(f"  error: {error}")
            top = max(levels)
            print(f"{spec}: cross-request batching gain {rates[top] / rates[min(levels)]:.2f}× "
                  f"(req/s at {top} clients over {min(levels)})")  # fmt: skip
    backend.close()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
